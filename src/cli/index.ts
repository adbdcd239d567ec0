// The `tiny-dancer` command. Each subcommand lives in its own module under ./commands and is
// loaded only when asked for, so `route` does not pay for kafkajs and `admin` not for the engine.
import { InvalidInputError, errorMessage, oneLine } from '../errors.js';

export interface CommandModule {
  /** Returns the exit status: 0 ok, 2 bad arguments or input, 1 other failures. */
  run(argv: string[]): Promise<number>;
  summary: string;
  usage: string;
}

const COMMANDS: Record<string, string> = {
  serve: 'serve',
  route: 'route',
  triage: 'triage',
  train: 'train',
  eval: 'eval',
  model: 'model',
  admin: 'admin',
  migrate: 'migrate',
  demo: 'demo',
  retrain: 'retrain',
};

async function load(name: string): Promise<CommandModule | undefined> {
  const file = COMMANDS[name];
  if (!file) return undefined;
  try {
    // A computed specifier: each command is its own module, found at run time (vite-ignore keeps
    // vitest from trying to bundle the set of possible targets).
    const specifier = `./commands/${file}.js`;
    return (await import(/* @vite-ignore */ specifier)) as CommandModule;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String(err).includes(`commands/${file}`)) {
      return undefined;
    }
    throw err;
  }
}

async function help(): Promise<string> {
  const lines = ['usage: tiny-dancer <command> [options]', '', 'commands:'];
  for (const name of Object.keys(COMMANDS)) {
    const mod = await load(name);
    if (mod) lines.push(`  ${name.padEnd(9)} ${mod.summary}`);
  }
  lines.push('', 'Run `tiny-dancer <command> --help` for a command\'s options.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${await help()}\n`);
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    const { VERSION } = await import('../version.js');
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const mod = await load(name);
  if (!mod) {
    process.stderr.write(`tiny-dancer: unknown command '${name}'\n${await help()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${mod.usage}\n`);
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (err) {
    process.stderr.write(`tiny-dancer ${name}: ${oneLine(errorMessage(err))}\n`);
    return err instanceof InvalidInputError ? 2 : 1;
  }
}
