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
    return pino({ name: opts.name, level }, pino.destination({ dest: opts.file, sync: false, mkdir: true }));
  }
  return pino({ name: opts.name, level });
}

/** A logger that drops everything, for tests and tools that do not want logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
