import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';

/**
 * The only root logger of a process. Daemons log JSON to stdout; `renderbus up` and the
 * demo send it to a file so the terminal stays readable. RENDERBUS_LOG sets the level.
 */
export function rootLogger(opts: { name: string; file?: string; level?: string }): Logger {
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
    return pino({ name: opts.name, level }, dest);
  }
  return pino({ name: opts.name, level });
}

/** A logger that drops everything, for tests and tools that do not want logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
