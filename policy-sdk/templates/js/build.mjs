// Builds __NAME__.wasm: componentizes router.js (which imports policy.js and the SDK in
// sdk/ by relative paths) against the WIT world `policy` in wit/, with every optional
// engine feature disabled so that the component imports only the policy world.
// Usage: node build.mjs [OUT.wasm]
import { componentize } from '@bytecodealliance/componentize-js';
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, '__NAME__.wasm'));
// componentize-js maps only the working directory into the engine: run from here.
process.chdir(here);
// The WIT files are read through preview2-shim, which has no preopens by default.
_setPreopens({ '/': '/' });

const started = Date.now();
try {
  const { component } = await componentize({
    sourcePath: join(here, 'router.js'),
    witPath: join(here, 'wit'),
    worldName: 'policy',
    disableFeatures: ['http', 'fetch-event', 'clocks', 'random', 'stdio'],
  });
  await writeFile(out, component);
  console.log(`built ${out}: ${component.length} bytes in ${((Date.now() - started) / 1000).toFixed(1)}s`);
} catch (e) {
  console.error(`error: the component did not build: ${e && e.message ? e.message : e}`);
  process.exit(1);
}
