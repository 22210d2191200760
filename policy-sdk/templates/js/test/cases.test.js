// cases.json (the file `switchyard policy test` runs through the sandbox) on MockHost.
import { testCaseFile } from '../sdk/cases.js';
import { policy } from '../policy.js';

testCaseFile(policy, new URL('../cases.json', import.meta.url));
