import type { Io } from './format.ts';
import type { GlobalOptions } from './global-options.ts';

/** What main.ts hands each command: its arguments, its own options, the global ones and where to write. */
export interface CommandContext<O = Record<string, unknown>> {
  args: string[];
  opts: O;
  globals: GlobalOptions;
  io: Io;
}

/** A command's implementation: resolves to the process exit code. */
export type CommandHandler = (c: CommandContext) => Promise<number>;
