import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { quote } from 'shell-quote';
import { findProgram } from './prerequisites.ts';

/** This checkout's `renderbus` program (package.json "bin"). */
export const RENDERBUS_BIN = fileURLToPath(new URL('../bin/renderbus.js', import.meta.url));

/**
 * How a user runs this checkout's CLI from any folder, for the commands the CLI prints:
 * `renderbus` when that name on PATH is this checkout's (tools/bootstrap.sh links it, or
 * `npm link`), else the program's full path (`npx renderbus` works only inside the checkout).
 */
export function selfCommand(): string {
  const onPath = findProgram('renderbus');
  if (onPath !== null && sameFile(onPath, RENDERBUS_BIN)) return 'renderbus';
  return quote([RENDERBUS_BIN]);
}

/** A command line for a user's shell: `selfCommand()` and the arguments, each quoted as needed. */
export function selfCommandLine(args: string[]): string {
  return [selfCommand(), quote(args)].filter((s) => s !== '').join(' ');
}

function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}
