// `tiny-dancer serve` as a child process of a test (run with `node --import tsx`), so a test can
// SIGKILL or SIGTERM the real thing. Configuration comes from the environment, as in production.
import { main } from '../../../src/cli/index.js';

process.exitCode = await main(['serve']);
