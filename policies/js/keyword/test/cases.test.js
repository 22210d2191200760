// keyword's cases.json through the SDK's native case runner (MockHost, the sandbox's checks).
import { testCaseFile } from '../../../../policy-sdk/js/cases.js';
import { policy } from '../logic.js';

testCaseFile(policy, new URL('../cases.json', import.meta.url));
