// Lint is part of `npm test`: correctness rules only, formatting is not policed here.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Folders above the engine, wire/ and store/ (they may import none of these).
const ABOVE = ['stream', 'control', 'observe', 'feedback', 'train', 'triage', 'resilience', 'startup', 'config', 'config-security'];

/** One layering rule: files matching `files` import none of `forbidden` (folders or root modules), nor app.ts or cli/. */
function layer(files, name, forbidden, ignores = []) {
  const group = forbidden.flatMap((f) => [`**/${f}/*`, `**/${f}/**`, `**/${f}.js`]);
  const top = ['**/app.js', '**/cli/*', '**/cli/**'];
  return [
    {
      files: Array.isArray(files) ? files : [files],
      ignores,
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: [
              ...(group.length ? [{ group, message: `layering (${name}): src/${name}/ imports nothing above it (README, Architecture)` }] : []),
              { group: top, message: 'layering: nothing imports src/app.ts (wiring) or src/cli/ (commands)' },
            ],
          },
        ],
      },
    },
  ];
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/control/generated/**', '.cache/**', 'coverage/**', 'bench/results/**', '**/*.wasm'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly',
        URL: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', WebAssembly: 'readonly',
        performance: 'readonly', queueMicrotask: 'readonly', AbortController: 'readonly', structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // Layering: imports run downward only. threads/ (worker-thread hosting) and wire/ (payload
  // codecs) are the floor, the engine sits on them, store/ beside it; nothing imports app.ts
  // (wiring) or cli/ (the commands).
  // (Later entries override earlier ones for the files they match: the general rule comes first.)
  ...layer(['src/**'], 'app', [], ['src/cli/**', 'src/app.ts']),
  ...layer('src/threads/**', 'threads', ['wire', 'engine', 'store', ...ABOVE]),
  ...layer('src/wire/**', 'wire', ['engine', 'store', ...ABOVE]),
  ...layer('src/engine/**', 'engine', ['store', ...ABOVE]),
  ...layer('src/store/**', 'store', ['engine', ...ABOVE]),
);
