import { readFileSync } from 'node:fs';

// Read once at load: the package version is what `--version` and the gRPC GetConfig report.
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
export const VERSION: string = pkg.version;
