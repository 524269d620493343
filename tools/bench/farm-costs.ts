import { readFile } from 'node:fs/promises';

/*
 * What a bench farm spends over a run: CPU time per process (from /proc, so it costs the farm
 * nothing) and the messages the nats-server carried (its /varz counters). Two snapshots, before and
 * after the timed job; their difference divided by the tasks is "per task".
 */

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const TICKS_PER_S = 100;

/** The name the benchmark's own process goes by (bench-farm.ts). */
export const BENCH_PROCESS = 'bench (operator)';

/** A process to watch: its own CPU, or that of the children it reaped (the fork server's renderers). */
export interface Watched {
  name: string;
  pid: number;
  part?: 'self' | 'reaped children';
}

export interface CostSnapshot {
  /** CPU ms so far, by process name. */
  cpuMs: Map<string, number>;
  /** nats-server's counters: messages in (published) and out (delivered), undefined without monitoring. */
  msgs?: { in: number; out: number };
}

/** utime + stime (or cutime + cstime) of one process in ms, or undefined once it is gone. */
async function cpuMsOf(pid: number, part: Watched['part']): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // fields after the command name (which may hold spaces), from field 3 (state) on
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const ticks = part === 'reaped children' ? f[13]! + f[14]! : f[11]! + f[12]!;
  return (ticks * 1000) / TICKS_PER_S;
}

/** The pids of a process's children (Linux 3.5+: /proc/<pid>/task/<pid>/children). */
export async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.trim() === '' ? [] : text.trim().split(/\s+/).map(Number);
}

export async function snapshot(watched: readonly Watched[], monitorUrl?: string): Promise<CostSnapshot> {
  const cpuMs = new Map<string, number>();
  for (const w of watched) {
    const ms = await cpuMsOf(w.pid, w.part);
    if (ms !== undefined) cpuMs.set(w.name, (cpuMs.get(w.name) ?? 0) + ms);
  }
  if (!monitorUrl) return { cpuMs };
  const varz = (await (await fetch(`${monitorUrl}/varz`)).json()) as { in_msgs: number; out_msgs: number };
  return { cpuMs, msgs: { in: varz.in_msgs, out: varz.out_msgs } };
}

export interface Costs {
  /** CPU ms per task, by process. */
  cpuMsPerTask: Map<string, number>;
  /** Messages per task: published to the server, delivered by it. */
  msgsPerTask?: { in: number; out: number };
}

export function costsBetween(a: CostSnapshot, b: CostSnapshot, tasks: number): Costs {
  const cpuMsPerTask = new Map<string, number>();
  for (const [name, ms] of b.cpuMs) cpuMsPerTask.set(name, (ms - (a.cpuMs.get(name) ?? 0)) / tasks);
  const msgs = a.msgs && b.msgs ? { in: (b.msgs.in - a.msgs.in) / tasks, out: (b.msgs.out - a.msgs.out) / tasks } : undefined;
  return { cpuMsPerTask, ...(msgs ? { msgsPerTask: msgs } : {}) };
}
