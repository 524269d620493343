import { FarmError } from '../../protocol/errors.ts';

/**
 * Bad command-line input: a flag, an argument or a job file the user must fix. The CLI
 * exits 2 for these and 1 for everything else (the farm, the job or the system failed).
 */
export class UsageError extends FarmError {
  override name = 'UsageError';
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('RB_BAD_ARGUMENT', message, opts);
  }
}

/** Exit codes of every renderbus command. */
export const ExitCode = { Ok: 0, Failed: 1, Usage: 2, Interrupted: 130 } as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export function exitCodeFor(err: unknown): ExitCode {
  return err instanceof UsageError ? ExitCode.Usage : ExitCode.Failed;
}

/** One line (or a few) saying what went wrong, for stderr. */
export function describeError(err: unknown, command: string): string {
  const where = command ? `renderbus ${command}` : 'renderbus';
  if (err instanceof UsageError) return `${where}: ${err.message}\n(see 'renderbus ${command ? `${command} ` : ''}--help')\n`;
  if (err instanceof FarmError) return `${where}: ${err.message}\n`;
  const e = err instanceof Error ? err : new Error(String(err));
  const detail = process.env.RENDERBUS_DEBUG ? `\n${e.stack ?? ''}` : '';
  return `${where}: unexpected error: ${e.message}${detail}\n`;
}
