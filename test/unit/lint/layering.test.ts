// The import layering is enforced by the lint in `npm test`: these cases show the rule fires
// with a message that names it, and stays quiet on imports that run downward.
import { ESLint } from 'eslint';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

async function messages(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${file}` });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('import layering (eslint no-restricted-imports)', () => {
  it('refuses an upward import from wire/, engine/ and store/, naming the layer', async () => {
    expect(await messages('src/wire/probe.ts', "import '../engine/router.js';\n")).toEqual([expect.stringMatching(/layering \(wire\)/)]);
    expect(await messages('src/wire/probe.ts', "import { loadConfig } from '../config.js';\nexport const x = loadConfig;\n")).toEqual([expect.stringMatching(/layering \(wire\)/)]);
    expect(await messages('src/engine/pool/probe.ts', "import '../../stream/kafka.js';\n")).toEqual([expect.stringMatching(/layering \(engine\)/)]);
    expect(await messages('src/store/probe.ts', "import '../observe/logger.js';\n")).toEqual([expect.stringMatching(/layering \(store\)/)]);
    expect(await messages('src/threads/probe.ts', "import '../engine/router.js';\n")).toEqual([expect.stringMatching(/layering \(threads\)/)]);
    expect(await messages('src/threads/probe.ts', "import '../stream/kafka.js';\n")).toEqual([expect.stringMatching(/layering \(threads\)/)]);
  });

  it('refuses app.ts and cli/ from anywhere but cli/', async () => {
    expect(await messages('src/stream/probe.ts', "import '../app.js';\n")).toEqual([expect.stringMatching(/nothing imports src\/app\.ts/)]);
    expect(await messages('src/control/probe.ts', "import '../cli/common.js';\n")).toEqual([expect.stringMatching(/nothing imports/)]);
    expect(await messages('src/cli/probe.ts', "import '../app.js';\n")).toEqual([]);
  });

  it('allows imports that run downward', async () => {
    expect(await messages('src/engine/probe.ts', "import '../wire/types.js';\nimport '../errors.js';\n")).toEqual([]);
    expect(await messages('src/engine/pool/probe.ts', "import '../../threads/host.js';\n")).toEqual([]);
    expect(await messages('src/stream/send/probe.ts', "import '../../threads/host.js';\n")).toEqual([]);
    expect(await messages('src/stream/probe.ts', "import '../engine/router.js';\nimport '../store/index.js';\n")).toEqual([]);
  });
});
