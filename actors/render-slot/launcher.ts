import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** Where a launched process reports to. */
export interface LaunchHandlers {
  onStart(pid: number): void;
  onOutput(stream: 'stdout' | 'stderr', text: string): void;
  /** After all its output. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  /** It never started; `code` is the errno name (ENOENT, EACCES...). */
  onError(err: NodeJS.ErrnoException): void;
}

const SCRIPT = resolve(import.meta.dirname, 'launcher.pl');
const errnoName = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));
const signalName = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

interface Live {
  h: LaunchHandlers;
  out: StringDecoder;
  err: StringDecoder;
}

/**
 * Client of launcher.pl, the fork server that starts renderer processes. Forking a small
 * perl process is several times cheaper than forking the render server's own Node process
 * (whose address space the tsx loader makes huge), and starting the process is most of what a
 * short frame costs. Restarts the fork server if it dies; in-flight processes then fail.
 */
export class Launcher {
  private proc: ChildProcess | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly live = new Map<number, Live>();

  constructor(private readonly perl = 'perl') {}

  /** True when perl is on this host (Debian: always, perl-base is essential). */
  static available(perl = 'perl'): boolean {
    return spawnSync(perl, ['-e', '1'], { stdio: 'ignore' }).status === 0;
  }

  /** Starts `argv` in `cwd` with exactly `env` as its environment (the fork server's own never passes). */
  launch(argv: readonly string[], cwd: string, env: Readonly<Record<string, string>>, h: LaunchHandlers): void {
    const vars = Object.entries(env).map(([name, value]) => `${name}=${value}`);
    if ([cwd, ...argv, ...vars].some((s) => s.includes('\0')) || Object.keys(env).some((name) => name === '' || name.includes('='))) {
      queueMicrotask(() => h.onError(Object.assign(new Error('an argument or variable holds a NUL byte, or a variable name is empty or holds "="'), { code: 'EINVAL' })));
      return;
    }
    const proc = this.ensure();
    const id = this.nextId++;
    this.live.set(id, { h, out: new StringDecoder('utf8'), err: new StringDecoder('utf8') });
    const payload = Buffer.from([cwd, ...vars, ...argv].join('\0'));
    proc.stdin!.write(`R ${id} ${payload.length} ${vars.length}\n`);
    proc.stdin!.write(payload);
  }

  close(): void {
    this.proc?.stdin?.end();
    this.proc = null;
  }

  private ensure(): ChildProcess {
    if (this.proc) return this.proc;
    // the fork server holds nothing of the render server's environment: each launch brings its own
    const proc = spawn(this.perl, [SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    proc.stdin!.on('error', () => {}); // reported through 'exit'
    proc.stdout!.on('data', (chunk: Buffer) => this.onData(chunk));
    const gone = (why: string) => {
      if (this.proc === proc) this.proc = null;
      this.buf = Buffer.alloc(0);
      const live = [...this.live.values()];
      this.live.clear();
      for (const l of live) l.h.onError(Object.assign(new Error(`the launcher ${why}`), { code: 'ELAUNCHER' }));
    };
    proc.on('error', (err) => gone(`could not start: ${err.message}`));
    proc.on('exit', (code, signal) => gone(`exited (${code ?? signal})`));
    this.proc = proc;
    return proc;
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl < 0) return;
      const head = this.buf.toString('latin1', 0, nl).split(' ');
      const id = Number(head[1]);
      const l = this.live.get(id);
      if (head[0] === 'O') {
        const len = Number(head[3]);
        if (this.buf.length < nl + 1 + len) return;
        const data = this.buf.subarray(nl + 1, nl + 1 + len);
        this.buf = this.buf.subarray(nl + 1 + len);
        if (l) l.h.onOutput(head[2] === '1' ? 'stdout' : 'stderr', (head[2] === '1' ? l.out : l.err).write(data));
        continue;
      }
      this.buf = this.buf.subarray(nl + 1);
      if (!l) continue;
      if (head[0] === 'S') l.h.onStart(Number(head[2]));
      else if (head[0] === 'X') {
        this.live.delete(id);
        const rest = l.out.end();
        if (rest) l.h.onOutput('stdout', rest);
        const restErr = l.err.end();
        if (restErr) l.h.onOutput('stderr', restErr);
        const code = Number(head[2]);
        l.h.onExit(code < 0 ? null : code, code < 0 ? (signalName.get(Number(head[3])) ?? 'SIGKILL') : null);
      } else if (head[0] === 'E') {
        this.live.delete(id);
        const name = errnoName.get(Number(head[3])) ?? 'EIO';
        const what = head[2] === 'cwd' ? `cannot enter ${head[2]}` : `cannot ${head[2]}`;
        l.h.onError(Object.assign(new Error(`${what}: ${name}`), { code: name, syscall: head[2] }));
      }
    }
  }
}
