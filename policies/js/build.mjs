// Componentizes every JS policy (policies/js/<name>/policy.js) against the
// switchyard:policy WIT world, with the optional StarlingMonkey features that
// need WASI capabilities the host does not grant disabled. Usage: node build.mjs WIT_DIR OUT_DIR [NAME...]
// Runs from the repository root: componentize-js maps only the working directory into the
// engine, and policies import the SDK by a relative path (../../../policy-sdk/js/).
import { componentize } from '@bytecodealliance/componentize-js';
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';
import { readdir, writeFile, mkdir, stat } from 'node:fs/promises';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [witArg, outArg, ...only] = process.argv.slice(2);
if (!witArg || !outArg) {
  console.error('usage: node build.mjs WIT_DIR OUT_DIR [NAME...]');
  process.exit(2);
}
const [witPath, outDir] = [resolve(witArg), resolve(outArg)];
process.chdir(resolve(here, '../..'));

async function policyNames() {
  const names = [];
  for (const entry of await readdir(here, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === 'node_modules') continue;
    try {
      await stat(join(here, entry.name, 'policy.js'));
      names.push(entry.name);
    } catch {
      // not a policy directory
    }
  }
  return names.sort();
}

// componentize-js reads the WIT package through its WASI splicer, which sees only
// the preview2-shim preopens; since preview2-shim 0.26 there are none by default.
_setPreopens({ '/': '/' });

// Every optional engine feature is disabled by default, so the component imports
// exactly the `policy` world and nothing from WASI (a "pure" component; an uncaught
// error traps, and the host uses the fallback decision). SWITCHYARD_JS_STDIO=1
// keeps `stdio` for debugging: console output and error messages then go to the
// host's log, and the component also imports wasi:cli/io/filesystem types.
const keepStdio = process.env.SWITCHYARD_JS_STDIO === '1';
const disableFeatures = ['http', 'fetch-event', 'clocks', 'random', ...(keepStdio ? [] : ['stdio'])];
console.log(`[js] disabled engine features: ${disableFeatures.join(', ')}`);

const names = only.length > 0 ? only : await policyNames();
await mkdir(outDir, { recursive: true });
let failed = 0;
for (const name of names) {
  const started = Date.now();
  console.log(`[js] componentizing ${name} ...`);
  try {
    const { component, imports } = await componentize({
      sourcePath: join(here, name, 'policy.js'),
      witPath,
      worldName: 'policy',
      disableFeatures,
    });
    const out = join(outDir, `${name}.wasm`);
    await writeFile(out, component);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`[js] ${out}: ${component.length} bytes in ${secs}s`);
    console.log(`[js]   world imports: ${[...new Set(imports.map((i) => (Array.isArray(i) ? i[0] : i)))].join(', ')}`);
  } catch (e) {
    failed += 1;
    console.error(`[js] error: ${name} did not build: ${e && e.message ? e.message : e}`);
  }
}
if (failed > 0) process.exit(1);
