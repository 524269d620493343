import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

import { LogFormat } from './log-format.ts';

export { LogFormat };

/** The format asked for (--log-format), else pretty on a terminal and JSON anywhere else (a pipe, a file). */
export function logFormatFor(asked: LogFormat | undefined, isTTY: boolean): LogFormat {
  return asked ?? (isTTY ? LogFormat.Pretty : LogFormat.Json);
}

/**
 * The only root logger of a process. Daemons log to stdout; `renderbus up` and the demo send
 * it to a file so the terminal stays readable. RENDERBUS_LOG sets the level. `format` absent:
 * pretty when stdout is a terminal, JSON otherwise, and JSON in a file (log shippers read it).
 */
export function rootLogger(opts: { name: string; file?: string; level?: string; format?: LogFormat }): Logger {
  const level = opts.level ?? process.env.RENDERBUS_LOG ?? 'info';
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    const dest = pino.destination({ dest: opts.file, sync: false, mkdir: true });
    // A full disk must not bring the farm down with its log (an unheard 'error' kills the
    // process): lines that cannot be written are lost, said once per outage on stderr.
    let failing = false;
    dest.on('error', (err: NodeJS.ErrnoException) => {
      if (!failing) process.stderr.write(`renderbus: cannot write the log ${opts.file} (${err.code ?? err.message}); lines are lost until it can\n`);
      failing = true;
    });
    dest.on('write', () => (failing = false));
    const format = opts.format ?? LogFormat.Json;
    return pino({ name: opts.name, level }, format === LogFormat.Pretty ? prettyStream(dest, false) : dest);
  }
  const format = logFormatFor(opts.format, process.stdout.isTTY === true);
  return format === LogFormat.Pretty ? pino({ name: opts.name, level }, prettyStream(1, process.stdout.isTTY === true)) : pino({ name: opts.name, level });
}

/** pino-pretty in this process (no worker thread): a line a record, the time of day, the bindings after it. */
function prettyStream(destination: number | DestinationStream, colorize: boolean): DestinationStream {
  return pretty({ destination, colorize, sync: typeof destination === 'number', translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
}

/** A logger that drops everything, for tests and tools that do not want logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
