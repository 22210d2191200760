#!/usr/bin/env node
// Command line for the native case runner: `node run-cases.js POLICY_MODULE CASES_JSON`
// runs a case file against the `policy` (or default) export of POLICY_MODULE on MockHost
// and prints PASS/FAIL per case like `switchyard policy test`; exit 1 when any case fails.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadCaseFile, runCases } from './cases.js';

const [modulePath, casesPath] = process.argv.slice(2);
if (!modulePath || !casesPath) {
  console.error('usage: node run-cases.js POLICY_MODULE CASES_JSON');
  process.exit(2);
}

async function main() {
  const mod = await import(pathToFileURL(resolve(modulePath)).href);
  const policy = mod.policy ?? mod.default;
  if (!policy || typeof policy.route !== 'function') {
    throw new Error(`${modulePath} exports no policy (export const policy = definePolicy({ info, route }))`);
  }
  const results = runCases(policy, loadCaseFile(resolve(casesPath)));
  for (const r of results) {
    console.log(r.problems.length === 0 ? `PASS ${r.name}` : `FAIL ${r.name}\n  - ${r.problems.join('\n  - ')}`);
  }
  const failed = results.filter((r) => r.problems.length > 0).length;
  console.log(`${results.length - failed} passed, ${failed} failed (native, MockHost)`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`error: ${e && e.message ? e.message : e}`);
    process.exit(2);
  },
);
