import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects, type JobSummary, type JournalRecord } from '../../protocol/index.ts';
import { startBenchNats } from './bench-nats.ts';

/*
 * Issue 3: "with 100,000 queued frames the scheduler is serving again within 3 s of its restart".
 * A nats-server on loopback and a scheduler as a separate process (`renderbus scheduler`), no
 * registry and no render servers, so nothing is dispatched and every frame stays queued. The
 * queue is submitted over NATS (`sched.submit`); then the scheduler is killed with SIGKILL and a
 * new one started, `runs` times. Measured: from the spawn of the new process to the first
 * `sched.query` jobs answer (requests every 20 ms, each with its own timeout, so an answer is
 * seen as soon as the scheduler gives one), which must list every job with its frames queued.
 * The phases come from the new scheduler's own JSON log lines (RENDERBUS_LOG=debug: its state
 * changes are logged at debug, 'journal replayed; serving' at info).
 *
 * Scenarios, each on a nats-server and journal of its own:
 *  - empty: an empty journal, the floor (process start-up, NATS, opening the streams);
 *  - queued: `jobs` × `framesPerJob` frames, all queued (one submit record per job);
 *  - history: `jobs` × (`doneFramesPerJob` + `framesPerJob`) frames of which the first
 *    `doneFramesPerJob` of each job have a result: the same number of frames queued, plus one
 *    journalled `task` record per finished frame (chunk 1), the replay's per-record cost. The task
 *    records are written straight into the journal stream, exactly as the scheduler writes them
 *    for a result (nothing renders in this benchmark).
 */
const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');
const SITE = 'bench';
/** The operator the benchmark submits as. */
const USER = 'bench';
/** The scheduler-role credential that writes task records straight into the journal, as a scheduler does. */
const JOURNAL_WRITER = 'bench-journal';
const POLL_MS = 20;
const SERVE_TIMEOUT_MS = 120_000;

export interface RecoveryOptions {
  jobs: number;
  /** Queued frames per job. */
  framesPerJob: number;
  /** Frames per job with a journalled result, in the `history` scenario; 0 skips it. */
  doneFramesPerJob: number;
  /** Restarts per scenario. */
  runs: number;
  /** Profile each restarted scheduler (`node --cpu-prof`) into this directory; it is then stopped with SIGTERM, not SIGKILL, so that the profile gets written. */
  cpuProfDir?: string;
}

interface LogLine {
  time: number;
  msg: string;
  state?: unknown;
  records?: number;
}

/** One scheduler process: its JSON log lines as they arrive. */
class SchedulerProcess {
  readonly lines: LogLine[] = [];
  readonly spawnedAt = Date.now();
  readonly t0 = performance.now();
  readonly proc: ChildProcess;
  readonly exited: Promise<unknown>;
  private tail: string[] = [];

  constructor(url: string, creds: string, cpuProfDir?: string) {
    const prof = cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : [];
    this.proc = spawn(process.execPath, [...prof, CLI, 'scheduler', '--nats', url, '--site', SITE, '--creds', creds], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RENDERBUS_LOG: 'debug' },
    });
    this.exited = once(this.proc, 'exit');
    // always drained: a full pipe would block the scheduler's (synchronous) log writes
    createInterface({ input: this.proc.stdout! }).on('line', (l) => this.take(l));
    createInterface({ input: this.proc.stderr! }).on('line', (l) => this.keep(l));
  }

  private keep(l: string) {
    this.tail.push(l);
    if (this.tail.length > 30) this.tail.shift();
  }

  private take(l: string) {
    this.keep(l);
    try {
      const j = JSON.parse(l) as LogLine;
      if (typeof j.time === 'number') this.lines.push(j);
    } catch { /* not a log line */ }
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Time (epoch ms, the scheduler's clock) of its first log line that matches. */
  at(pred: (l: LogLine) => boolean): number | undefined {
    return this.lines.find(pred)?.time;
  }

  output(): string {
    return this.tail.join('\n');
  }

  /** VmRSS and VmHWM in kB, from /proc. */
  async memory(): Promise<{ rssKb: number; hwmKb: number }> {
    const s = await readFile(`/proc/${this.pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }
}

interface Answer {
  /** performance.now() when the answer arrived. */
  at: number;
  atEpoch: number;
  jobs: JobSummary[];
  polls: number;
}

/** Asks `sched.query` every POLL_MS without waiting for earlier asks; the first jobs answer wins. */
function firstAnswer(nc: NatsConnection, timeoutMs: number): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const end = performance.now() + timeoutMs;
    let polls = 0;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      fn();
    };
    const ask = () => {
      if (performance.now() > end) {
        finish(() => reject(new Error(`the scheduler did not answer sched.query within ${timeoutMs} ms`)));
        return;
      }
      polls += 1;
      call(nc, subjects.schedQuery(SITE), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 5_000 }).then(
        (body) => {
          const at = performance.now();
          const atEpoch = Date.now();
          if ('jobs' in body) finish(() => resolvePromise({ at, atEpoch, jobs: body.jobs, polls }));
        },
        () => { /* RB_SCHEDULER_UNAVAILABLE, no responders or no answer: not serving yet */ },
      );
    };
    const timer = setInterval(ask, POLL_MS);
    ask();
  });
}

interface Restart {
  totalMs: number;
  /** spawn → first log line (Node + tsx + modules + NATS connect; the machine's `starting`). NaN when the log does not say. */
  startupMs: number;
  /** starting → recovering: JetStream streams opened. */
  openMs: number;
  /** recovering → 'journal replayed; serving'. */
  replayMs: number;
  /** serving → the answer seen here. */
  answerMs: number;
  records: number;
  rssKb: number;
  hwmKb: number;
}

interface Scenario {
  name: string;
  jobs: number;
  queued: number;
  done: number;
  restarts: Restart[];
}

/** Kills the running scheduler, starts a new one and measures how long until it serves. */
async function restart(nc: NatsConnection, url: string, creds: string, prev: SchedulerProcess, expect: { jobs: number; queued: number; done: number }, o: RecoveryOptions): Promise<{ next: SchedulerProcess; r: Restart }> {
  await prev.stop(o.cpuProfDir ? 'SIGTERM' : 'SIGKILL');
  const s = new SchedulerProcess(url, creds, o.cpuProfDir);
  let ans: Answer;
  try {
    ans = await firstAnswer(nc, SERVE_TIMEOUT_MS);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- scheduler output\n${s.output()}`);
  }
  const queued = ans.jobs.reduce((n, j) => n + j.counts.queued, 0);
  const done = ans.jobs.reduce((n, j) => n + j.counts.done, 0);
  if (ans.jobs.length !== expect.jobs || queued !== expect.queued || done !== expect.done) {
    throw new Error(`the restarted scheduler lists ${ans.jobs.length} jobs, ${queued} frames queued and ${done} done; expected ${expect.jobs}, ${expect.queued} and ${expect.done}`);
  }
  await sleep(1_000); // the log lines written just before the answer; RSS once the answer is out
  const mem = await s.memory();
  const starting = s.at((l) => l.msg === 'scheduler state' && l.state === 'starting') ?? NaN;
  const recovering = s.at((l) => l.msg === 'scheduler state' && l.state === 'recovering') ?? NaN;
  const serving = s.lines.find((l) => l.msg === 'journal replayed; serving');
  const r: Restart = {
    totalMs: ans.at - s.t0,
    startupMs: starting - s.spawnedAt,
    openMs: recovering - starting,
    replayMs: (serving?.time ?? NaN) - recovering,
    answerMs: ans.atEpoch - (serving?.time ?? NaN),
    records: serving?.records ?? NaN,
    rssKb: mem.rssKb,
    hwmKb: mem.hwmKb,
  };
  console.log(`  restart: serving after ${r.totalMs.toFixed(0)} ms (start-up ${r.startupMs}, open ${r.openMs}, replay ${r.replayMs} of ${r.records} records, answer ${r.answerMs}; ${ans.polls} asks), RSS ${(r.rssKb / 1024).toFixed(0)} MiB, peak ${(r.hwmKb / 1024).toFixed(0)} MiB`);
  return { next: s, r };
}

async function scenario(name: string, jobs: number, queuedPerJob: number, donePerJob: number, o: RecoveryOptions): Promise<Scenario> {
  console.log(`recovery, ${name}: ${jobs} jobs × ${queuedPerJob} queued frames${donePerJob ? ` + ${donePerJob} done` : ''}`);
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-recovery-'));
  const nats = await startBenchNats(dir, SITE, [
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.Scheduler, name: JOURNAL_WRITER },
    { role: Role.Operator, name: USER },
  ]);
  const schedCreds = nats.credsFile(Role.Scheduler);
  const nc = await nats.connectAs(Role.Operator, USER);
  let sched = new SchedulerProcess(nats.url, schedCreds);
  try {
    await firstAnswer(nc, SERVE_TIMEOUT_MS);
    const scene = join(dir, 'none.scene');
    await writeFile(scene, '');
    const t0 = performance.now();
    const frames = queuedPerJob + donePerJob;
    const ids: string[] = [];
    for (let i = 0; i < jobs; i++) {
      const spec = { name: `recovery-${i}`, scene, renderer: 'command' as const, command: 'true', frames: `1-${frames}`, output: { dir: join(dir, 'out', String(i)) } };
      const { jobId } = await call(nc, subjects.schedSubmit(SITE, USER), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply, { timeoutMs: 10_000 });
      ids.push(jobId);
    }
    if (donePerJob > 0) {
      // only a scheduler's credential may write the journal
      const writer = await nats.connectAs(Role.Scheduler, JOURNAL_WRITER);
      try {
        await journalResults(writer, ids, donePerJob, join(dir, 'out'));
      } finally {
        await writer.close();
      }
    }
    console.log(`  queue in place after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const expect = { jobs, queued: jobs * queuedPerJob, done: jobs * donePerJob };
    const restarts: Restart[] = [];
    for (let i = 0; i < o.runs; i++) {
      const { next, r } = await restart(nc, nats.url, schedCreds, sched, expect, o);
      sched = next;
      restarts.push(r);
    }
    return { name, jobs, queued: expect.queued, done: expect.done, restarts };
  } finally {
    await sched.stop(o.cpuProfDir ? 'SIGTERM' : 'SIGKILL');
    await nc.close();
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** One `task` record per frame (chunk 1: task i is frame i + 1), as the scheduler journals a result. */
async function journalResults(nc: NatsConnection, jobIds: string[], perJob: number, outDir: string): Promise<void> {
  const js = jetstream(nc, { timeout: 30_000 });
  const at = Date.now();
  const window: Promise<unknown>[] = [];
  for (const [j, jobId] of jobIds.entries()) {
    for (let t = 0; t < perJob; t++) {
      const frame = t + 1;
      const rec: JournalRecord = {
        v: PROTOCOL_MAJOR, kind: 'task', jobId, taskIndex: t, status: 'done', attempt: 1, host: 'bench-host', slot: t % 16,
        outputs: [{ frame, path: join(outDir, String(j), `frame_${String(frame).padStart(4, '0')}.png`) }],
        stats: { wallMs: 1200, cpuMs: 1100, peakRssKb: 250_000, bytesWritten: 1_500_000 }, at,
      };
      window.push(js.publish(subjects.journal(SITE, 'task'), codecs.journalRecord.encode(rec), { msgID: `task-${jobId}-${t}-1` }));
      if (window.length >= 1000) await Promise.all(window.splice(0));
    }
  }
  await Promise.all(window);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const sec = (x: number) => (Number.isFinite(x) ? (x / 1000).toFixed(2) : 'n/a');
const TARGET_MS = 3_000;

/** Runs the recovery benchmark; returns its docs/benchmarks.md section. */
export async function recoveryBench(o: RecoveryOptions, machine: string): Promise<string> {
  const loadBefore = loadavg()[0]!;
  const empty = await scenario('empty journal', 0, 0, 0, o);
  const queued = await scenario('queued', o.jobs, o.framesPerJob, 0, o);
  const history = o.doneFramesPerJob > 0 ? await scenario('with history', o.jobs, o.framesPerJob, o.doneFramesPerJob, o) : undefined;
  const loadAfter = loadavg()[0]!;
  const scenarios = [empty, queued, ...(history ? [history] : [])];
  const med = (s: Scenario, k: keyof Restart) => median(s.restarts.map((r) => r[k]));
  const worst = (s: Scenario) => Math.max(...s.restarts.map((r) => r.totalMs));
  const floorKb = med(empty, 'rssKb');
  const rows = scenarios.map((s) => {
    const frames = s.queued + s.done;
    const rss = med(s, 'rssKb');
    const perFrame = frames > 0 ? `${((rss * 1024) / frames).toFixed(0)} B (${(((rss - floorKb) * 1024) / frames).toFixed(0)} B above empty)` : '';
    return `| ${s.name} | ${s.jobs} | ${s.queued} | ${s.done} | ${med(s, 'records').toFixed(0)} | ${sec(med(s, 'startupMs'))} | ${sec(med(s, 'openMs'))} | ${sec(med(s, 'replayMs'))} | ${sec(med(s, 'answerMs'))} | **${sec(med(s, 'totalMs'))}** | ${sec(worst(s))} | ${(rss / 1024).toFixed(0)} MiB (peak ${(med(s, 'hwmKb') / 1024).toFixed(0)}) | ${perFrame} |`;
  });
  const verdict = (s: Scenario, what: string) => `${worst(s) <= TARGET_MS ? '**Met**' : '**Not met**'} ${what}: worst restart ${sec(worst(s))} s, median ${sec(med(s, 'totalMs'))} s (target 3 s).`;
  const notes = [verdict(queued, `with ${queued.queued} queued frames`)];
  if (history) {
    const perRecordUs = ((med(history, 'replayMs') - med(queued, 'replayMs')) * 1000) / (med(history, 'records') - med(queued, 'records'));
    notes.push(`${verdict(history, `with the same queue behind ${history.done} finished frames`)} The replay costs ${perRecordUs.toFixed(0)} µs per journalled task record.`);
  }
  return [
    `## Scheduler recovery (issue 3): ${machine}`,
    '',
    `\`npm run bench -- --only recovery\`: a nats-server on loopback and the scheduler as a separate process (\`renderbus scheduler\`), no registry and no render servers, so nothing is dispatched. ${o.jobs} jobs × ${o.framesPerJob} frames of \`true\` (chunk 1, so a task per frame) are submitted over \`sched.submit\`; then the scheduler is killed with \`kill -9\` and a new one started, ${o.runs} times per row. Measured: spawn of the new process → the first \`sched.query\` jobs answer (asked every ${POLL_MS} ms), which must list every job with all its frames queued. Phases from the scheduler's own log (debug level, ms resolution): start-up = spawn → its first log line (Node, tsx, modules, NATS connect); open = JetStream streams opened; replay = the journal replayed; answer = serving → answer seen by the benchmark. *With history*: ${o.doneFramesPerJob} more frames per job have a result, one journalled \`task\` record each (written straight into the journal stream as the scheduler writes them), so the same ${queued.queued} frames are queued behind ${o.jobs * o.doneFramesPerJob} finished ones. RSS is VmRSS 1 s after the first answer, per frame held (queued + done) and above the empty-journal scheduler. Times in s, medians unless marked worst. Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadAfter.toFixed(1)} at the end.`,
    '',
    '| journal | jobs | frames queued | frames done | records replayed | start-up | open | replay | answer | total | worst total | RSS | RSS per frame |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    ...notes.flatMap((n) => [n, '']),
  ].join('\n');
}
