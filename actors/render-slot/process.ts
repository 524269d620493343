import { spawn } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { FarmError } from '../../protocol/index.ts';
import type { Launcher, LaunchHandlers } from './launcher.ts';
import { rendererEnv } from './renderer-env.ts';

/** What one process (with its whole process tree) cost. */
export interface ProcessUsage {
  wallMs: number;
  cpuMs: number;
  peakRssKb: number;
}

export interface ProcessExit {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** cancel() was called before it ended. */
  cancelled: boolean;
  usage: ProcessUsage;
}

/** Where the process's output is copied (a per-task log file). */
export interface LogSink {
  write(text: string): unknown;
}

export interface RunOptions {
  argv: string[];
  cwd: string;
  /** The process's whole environment (default: rendererEnv's, renderer-env.ts); the render server's own never passes. */
  env?: Readonly<Record<string, string>>;
  /** Every chunk of output as it arrives, decoded as UTF-8. */
  onOutput?: (stream: 'stdout' | 'stderr', text: string) => void;
  log?: LogSink | null;
  /** Aborting it cancels the process. */
  signal?: AbortSignal;
  /** SIGTERM first, then SIGKILL after this long (default 5000 ms). */
  killGraceMs?: number;
  /** /proc sampling period (default 50 ms); the first sample is taken one period after start. */
  pollMs?: number;
  /** Every /proc sample: the tree's memory now (resident, summed over its processes). */
  onSample?: (s: { rssKb: number }) => void;
  /** The fork server to start it from; without one it is spawned directly. */
  launcher?: Launcher;
}

export interface RunningProcess {
  readonly pid: number | undefined;
  /** Settles when the process ended and its output was read; rejects (FarmError) when it could not start. */
  readonly exited: Promise<ProcessExit>;
  /** SIGTERM to the process group, SIGKILL after the grace period. */
  cancel(): void;
}

// Linux constants (notes/renderers.md): utime/stime in clock ticks of 1/100 s, rss in 4 KiB pages.
const MS_PER_TICK = 10;
const PAGE_KB = 4;
const MAX_TREE = 256;

/**
 * Starts one renderer invocation in its own process group (so a cancel reaches a whole
 * `sh -c` pipeline), with an explicit environment (never this process's: it holds the farm's
 * secrets), and measures it: through the fork server when one is given (much
 * cheaper per process, launcher.ts), else with a direct spawn. Accounting polls /proc over
 * the process tree; a process that ends before the first period costs no /proc reads at all
 * (its CPU and memory then read 0: too small to bill).
 */
export function runProcess(o: RunOptions): RunningProcess {
  const started = performance.now();
  const pollMs = o.pollMs ?? 50;
  let pid: number | undefined;
  let cancelled = false;
  let done = false;
  let cpuTicks = 0;
  let peakKb = 0;
  let pollTimer: NodeJS.Timeout | undefined;
  let killTimer: NodeJS.Timeout | undefined;

  const signalGroup = (sig: NodeJS.Signals) => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // the group is gone already
    }
  };
  const cancel = () => {
    if (done || cancelled) return;
    cancelled = true;
    signalGroup('SIGTERM'); // before the pid is known, onStart sends it
    killTimer = setTimeout(() => signalGroup('SIGKILL'), o.killGraceMs ?? 5_000);
    killTimer.unref();
  };
  const onAbort = () => cancel();
  if (o.signal?.aborted) queueMicrotask(cancel);
  else o.signal?.addEventListener('abort', onAbort, { once: true });

  const sample = async () => {
    pollTimer = undefined;
    if (done) return;
    const s = pid === undefined ? null : await sampleTree(pid);
    if (s) {
      if (s.ticks > cpuTicks) cpuTicks = s.ticks;
      if (s.peakKb > peakKb) peakKb = s.peakKb;
      o.onSample?.({ rssKb: s.rssKb });
    }
    if (!done) pollTimer = setTimeout(() => void sample(), pollMs);
  };
  pollTimer = setTimeout(() => void sample(), pollMs);
  o.log?.write(`$ ${o.argv.join(' ')}\n`);

  const exited = new Promise<ProcessExit>((resolve, reject) => {
    const finish = () => {
      done = true;
      if (pollTimer) clearTimeout(pollTimer);
      if (killTimer) clearTimeout(killTimer);
      o.signal?.removeEventListener('abort', onAbort);
    };
    const h: LaunchHandlers = {
      onStart: (p) => {
        pid = p;
        if (cancelled) signalGroup('SIGTERM');
      },
      onOutput: (stream, text) => {
        o.log?.write(text);
        o.onOutput?.(stream, text);
      },
      onExit: (code, signal) => {
        if (done) return;
        finish();
        const usage = { wallMs: performance.now() - started, cpuMs: cpuTicks * MS_PER_TICK, peakRssKb: peakKb };
        o.log?.write(`\n[exit ${code ?? signal} wall ${usage.wallMs.toFixed(0)} ms cpu ${usage.cpuMs} ms peak ${usage.peakRssKb} KiB${cancelled ? ' cancelled' : ''}]\n`);
        resolve({ code, signal, cancelled, usage });
      },
      onError: (err) => {
        if (done) return;
        finish();
        void startError(o.argv[0]!, o.cwd, err).then(reject);
      },
    };
    const env = o.env ?? rendererEnv(undefined);
    if (o.launcher) o.launcher.launch(o.argv, o.cwd, env, h);
    else spawnDirect(o, env, h);
  });
  return {
    get pid() {
      return pid;
    },
    exited,
    cancel,
  };
}

/** A plain spawn from this process, reporting through the same handlers as the fork server. */
function spawnDirect(o: RunOptions, env: Readonly<Record<string, string>>, h: LaunchHandlers): void {
  const child = spawn(o.argv[0]!, o.argv.slice(1), { cwd: o.cwd, env: { ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid !== undefined) h.onStart(child.pid);
  child.stdout!.setEncoding('utf8').on('data', (t: string) => h.onOutput('stdout', t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => h.onOutput('stderr', t));
  child.once('error', (err: NodeJS.ErrnoException) => h.onError(err));
  child.once('exit', () => {
    // a grandchild that keeps the pipes open must not hold the result forever
    const t = setTimeout(() => {
      child.stdout?.destroy();
      child.stderr?.destroy();
    }, 2_000);
    t.unref();
    child.once('close', () => clearTimeout(t));
  });
  child.once('close', (code: number | null, signal: NodeJS.Signals | null) => h.onExit(code, signal));
}

async function startError(bin: string, cwd: string, err: NodeJS.ErrnoException): Promise<FarmError> {
  if (err.code === 'ENOENT') {
    // spawn says ENOENT for a missing working directory as well as a missing program
    const cwdExists = await access(cwd).then(() => true, () => false);
    // the scene's folder went away after the check before the start (input-check.ts): the same failure
    if (!cwdExists) return new FarmError('RB_INPUT_NOT_FOUND', `working directory '${cwd}' does not exist (the scene's directory)`, { cause: err });
    return new FarmError('RB_RENDERER_MISSING', `'${bin}' is not installed on this host (not found on PATH)`, { cause: err });
  }
  if (err.code === 'EACCES') return new FarmError('RB_RENDERER_MISSING', `'${bin}' is not executable`, { cause: err });
  return new FarmError('RB_RENDER_FAILED', `could not start '${bin}': ${err.message}`, { cause: err });
}

/** One sample of a process tree; the byte counts only when asked for (`io`). */
export interface TreeSample {
  ticks: number;
  rssKb: number;
  peakKb: number;
  /** Bytes read and written through system calls (`/proc/<pid>/io` rchar/wchar, pipes included), summed over the live tree. */
  readBytes?: number;
  writtenBytes?: number;
}

/** Sum of CPU ticks and memory (and with `io`, bytes read and written) over a live process tree, or null when the root is gone. */
export async function sampleTree(root: number, opts: { io?: boolean } = {}): Promise<TreeSample | null> {
  const pids = await treePids(root);
  if (pids.length === 0) return null;
  const [stats, io] = await Promise.all([Promise.all(pids.map(readProc)), opts.io ? Promise.all(pids.map(readIo)) : null]);
  let ticks = 0;
  let rssKb = 0;
  let hwmKb = 0;
  for (const s of stats) {
    if (!s) continue;
    ticks += s.ticks;
    rssKb += s.rssKb;
    if (s.hwmKb > hwmKb) hwmKb = s.hwmKb;
  }
  if (!stats[0]) return null;
  const out: TreeSample = { ticks, rssKb, peakKb: Math.max(rssKb, hwmKb) };
  if (io) {
    out.readBytes = 0;
    out.writtenBytes = 0;
    for (const x of io) {
      if (!x) continue;
      out.readBytes += x.read;
      out.writtenBytes += x.written;
    }
  }
  return out;
}

/** A process's I/O counters, or null when it is gone (or its io file is not readable). */
async function readIo(pid: number): Promise<{ read: number; written: number } | null> {
  try {
    const text = await readFile(`/proc/${pid}/io`, 'utf8');
    const read = /^rchar:\s+(\d+)/m.exec(text);
    const written = /^wchar:\s+(\d+)/m.exec(text);
    return { read: read ? Number(read[1]) : 0, written: written ? Number(written[1]) : 0 };
  } catch {
    return null;
  }
}

/** The root and all its descendants, found through /proc/<pid>/task/<tid>/children. */
async function treePids(root: number): Promise<number[]> {
  const out: number[] = [];
  let level = [root];
  while (level.length > 0 && out.length < MAX_TREE) {
    out.push(...level);
    const next = await Promise.all(level.map(childrenOf));
    level = next.flat();
  }
  return out;
}

async function childrenOf(pid: number): Promise<number[]> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const lists = await Promise.all(
    tids.map((tid) => readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')),
  );
  const kids: number[] = [];
  for (const l of lists) for (const p of l.split(' ')) if (p.trim() !== '') kids.push(Number(p));
  return kids;
}

/**
 * One process: its own CPU plus that of the children it reaped (cutime/cstime), so CPU of
 * descendants that already ended is still counted once; current RSS and peak (VmHWM).
 */
async function readProc(pid: number): Promise<{ ticks: number; rssKb: number; hwmKb: number } | null> {
  try {
    const [stat, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')]);
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    const rssKb = Number(f[21]) * PAGE_KB;
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    return { ticks, rssKb, hwmKb: hwm ? Number(hwm[1]) : 0 };
  } catch {
    return null;
  }
}
