// Type-checks the hand-written .d.ts files with tsc --noEmit (typescript, a devDependency;
// found in this package's node_modules or in the JS policy toolchain's): typical policy
// code must compile, misuse must not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = fileURLToPath(new URL('..', import.meta.url));
const tsc = [join(sdk, 'node_modules/.bin/tsc'), join(sdk, '../../policies/js/node_modules/.bin/tsc')].find(existsSync);
const skip = tsc ? false : 'no tsc: run `npm install` in policy-sdk/js or `bash policies/js/build.sh` first';

function typecheck(args, cwd = sdk) {
  try {
    execFileSync(tsc, args, { cwd, encoding: 'utf8', stdio: 'pipe' });
    return '';
  } catch (e) {
    return `${e.stdout}${e.stderr}` || String(e);
  }
}

test('test/types-check.ts compiles against the .d.ts files', { skip }, () => {
  assert.equal(typecheck(['-p', 'tsconfig.json']), '');
});

test('a type error in policy code is reported', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdk-tsc-'));
  const file = join(dir, 'bad.ts');
  writeFileSync(file, `import { userRequest } from ${JSON.stringify(join(sdk, 'testing.js'))};\nexport const n: number = userRequest('x').messages[0].content;\n`);
  const out = typecheck(['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', file], dir);
  assert.match(out, /TS2322/);
});
