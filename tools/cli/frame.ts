import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { call } from '../../actors/bus/index.ts';
import {
  PROTOCOL_MAJOR, codecs, eventFrames, FarmError, isToken, subjects, taskId,
  type FrameAttempt, type FrameRecord, type JobDetail, type LiveStats,
} from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm, type FarmClient } from './farm-client.ts';
import { loadJob } from './job.ts';
import { dateTime, duration, frameStateText, json, paint } from './format.ts';

export interface FrameOptions {
  log?: boolean;
  follow?: boolean;
  kill?: boolean;
  json?: boolean;
}

/** `<job>:<n>` → its parts; anything else is a usage error naming the argument. */
export function parseFrameRef(text: string): { jobId: string; frame: number } {
  const m = /^([^:]+):(\d{1,9})$/.exec(text.trim());
  if (!m || !isToken(m[1]!)) throw new UsageError(`frame: '${text}' is not <job>:<frame> (e.g. j1a2b3c:12)`);
  return { jobId: m[1]!, frame: Number(m[2]) };
}

/** `<host>/<n>` → its parts; anything else is a usage error naming the argument. */
export function parseSlotRef(text: string): { host: string; slot: number } {
  const m = /^([^/]+)\/(\d{1,4})$/.exec(text.trim());
  if (!m || !isToken(m[1]!)) throw new UsageError(`slot: '${text}' is not <host>/<slot number> (e.g. node-7/0)`);
  return { host: m[1]!, slot: Number(m[2]) };
}

/**
 * A frame's log file: `<output dir>/.rb-logs/<job>.<task index>-a<attempt>.log` (task-log.ts,
 * output.ts). Computed here from the job detail, as the scheduler's frame record does not carry it.
 */
export function frameLogPath(job: Pick<JobDetail, 'jobId' | 'outputDir'>, f: Pick<FrameRecord, 'taskIndex' | 'attempt'>): string | null {
  if (f.attempt < 1) return null; // never started: no log
  return join(job.outputDir, '.rb-logs', `${taskId(job.jobId, f.taskIndex)}-a${f.attempt}.log`);
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** One line of a running process's figures. */
export function liveText(s: LiveStats): string {
  const parts = [
    `cpu ${s.cpuPercent.toFixed(0)}%`,
    `cpu time ${duration(s.cpuMs)}`,
    `memory ${bytes(s.rssKb * 1024)} (peak ${bytes(s.peakRssKb * 1024)})`,
  ];
  if (s.readBytes !== undefined) parts.push(`read ${bytes(s.readBytes)}, written ${bytes(s.writtenBytes ?? 0)}`);
  parts.push(`running ${duration(s.wallMs)}`);
  return parts.join(', ');
}

/** One failed attempt in a line: where, when, how long, and its error. */
export function attemptText(a: FrameAttempt): string {
  const when = a.startedAt !== undefined ? `${dateTime(a.startedAt)}, took ${duration(a.finishedAt - a.startedAt)}` : `ended ${dateTime(a.finishedAt)}`;
  return `failed on ${a.host}/${a.slot} (${when}): ${a.error.replace(/\s+/g, ' ').trim()}`;
}

/** The frame's record, live figures and log, as text (failed attempts one a line, the last MAX_FRAME_ATTEMPTS). */
export function describeFrame(job: JobDetail, f: FrameRecord, live: LiveStats | null, logPath: string | null, log: string | null, colour = paint({}), percent?: number): string {
  const lines: [string, string][] = [
    ['frame', `${job.jobId}:${f.frame}  ${job.name}`],
    ['state', frameStateText(colour, f)],
    ['host/slot', f.host !== undefined ? `${f.host}/${f.slot ?? '-'}` : '-'],
    ['attempt', String(f.attempt)],
  ];
  if (f.handedAt !== undefined) lines.push(['handed out', dateTime(f.handedAt)]);
  if (f.inHand) lines.push(['started', 'not yet: its slot holds it in hand, to start when the task it renders ends']);
  if (f.startedAt !== undefined) lines.push(['started', dateTime(f.startedAt)]);
  if (f.finishedAt !== undefined) lines.push(['finished', dateTime(f.finishedAt)]);
  if (f.error) lines.push(['error', colour.red(f.error)]);
  if (f.stats) {
    lines.push(['stats', `wall ${duration(f.stats.wallMs)}, cpu ${duration(f.stats.cpuMs)}, peak ${bytes(f.stats.peakRssKb * 1024)}, frames written ${bytes(f.stats.bytesWritten)}`]);
  }
  if (percent !== undefined) lines.push(['progress', `${Math.round(percent)}% (as its renderer last said)`]);
  if (live) lines.push(['live', liveText(live)]);
  for (const a of f.attempts ?? []) lines.push([`attempt ${a.attempt}`, colour.red(attemptText(a))]);
  lines.push(['log', logPath ?? '-']);
  const width = Math.max(...lines.map(([k]) => k.length));
  let out = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
  if (log !== null) {
    const tail = log.split('\n').slice(-21).join('\n');
    out += `\n${tail}${tail.endsWith('\n') ? '' : '\n'}`;
  }
  return out;
}

export async function loadFrame(fc: FarmClient, jobId: string, frame: number): Promise<{ job: JobDetail; record: FrameRecord }> {
  const job = await loadJob(fc, jobId);
  const record = job.frames.find((f) => f.frame === frame);
  if (!record) {
    const fs = job.frames.map((f) => f.frame);
    const range = fs.length === 0 ? 'none' : `${Math.min(...fs)}-${Math.max(...fs)}`;
    throw new FarmError('RB_BAD_ARGUMENT', `job ${jobId} has no frame ${frame} (its frames: ${range})`);
  }
  return { job, record };
}

/** How long a running frame's view waits for its renderer's progress after its figures came (a slot sends it at most once a second). */
const PROGRESS_GRACE_MS = 1_200;

/**
 * The frame's latest `progress` percentage while `during` runs, or within PROGRESS_GRACE_MS after
 * (its renderer's own count, from the adapter or a command job's `progress` regex), or undefined
 * when it said none meanwhile.
 */

export async function progressDuring<T>(fc: FarmClient, jobId: string, frame: number, during: () => Promise<T>): Promise<{ result: T; percent?: number }> {
  const sub = fc.nc.subscribe(subjects.jobFrameEventsOf(fc.site, jobId, 'progress'));
  let percent: number | undefined;
  let heard = () => {};
  const reading = (async () => {
    for await (const m of sub) {
      try {
        const ev = codecs.frameEvent.decode(m.data);
        if (ev.percent !== undefined && eventFrames(ev).some((f) => f.frame === frame)) {
          percent = ev.percent;
          heard();
        }
      } catch {
        // not a frame event we can read: no progress
      }
    }
  })();
  try {
    const result = await during();
    // a slot sends progress at most once a second, stats as often: give the renderer's count that second
    if (percent === undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, PROGRESS_GRACE_MS);
        heard = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return percent !== undefined ? { result, percent } : { result };
  } finally {
    sub.unsubscribe();
    await reading;
  }
}

/** The next `stats` event of a frame, or null when none comes within `timeoutMs`. */
export async function nextLiveStats(fc: FarmClient, jobId: string, frame: number, timeoutMs: number): Promise<LiveStats | null> {
  // a task's stats event is one for all its frames, on the subject of its first
  const sub = fc.nc.subscribe(subjects.jobFrameEventsOf(fc.site, jobId, 'stats'));
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  try {
    for await (const m of sub) {
      let ev;
      try {
        ev = codecs.frameEvent.decode(m.data);
      } catch {
        continue; // not a frame event we can read: not the answer
      }
      if (!eventFrames(ev).some((f) => f.frame === frame)) continue;
      return ev.live ?? null;
    }
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** Sends kill-task for the task running `record` on its host; the scheduler retries the frame like a failure. */
export async function killTask(fc: FarmClient, host: string, task: string, attempt?: number): Promise<void> {
  await call(fc.nc, subjects.hostCtl(fc.site, host), codecs.hostCtl, { v: PROTOCOL_MAJOR, action: 'kill-task', taskId: task, ...(attempt !== undefined ? { attempt } : {}) }, codecs.hostCtlReply, {
    timeoutMs: 5_000,
    unavailable: 'RB_UNKNOWN_HOST',
  });
}

async function readLog(path: string | null): Promise<string | null> {
  if (!path) return null;
  try {
    const fh = await open(path, 'r');
    try {
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}

/**
 * `renderbus frame <job>:<n>`: the frame's record (state, host/slot, attempt, times, error,
 * stats), the live figures of its process when it runs, and its log. `--follow` prints the log
 * as it grows until the frame's attempt ends; `--kill` kills the running task.
 */
export async function frameCommand(c: CommandContext<FrameOptions>): Promise<number> {
  const { jobId, frame } = parseFrameRef(c.args[0] ?? '');
  const fc = await openFarm(c.globals, 'renderbus-frame');
  try {
    const { job, record } = await loadFrame(fc, jobId, frame);
    const logPath = frameLogPath(job, record);
    if (c.opts.kill) {
      if (record.state !== 'running' || record.host === undefined) throw new FarmError('RB_NO_SUCH_SLOT', `frame ${jobId}:${frame} is not running (it is ${record.state})`);
      await killTask(fc, record.host, taskId(jobId, record.taskIndex), record.attempt);
      c.io.stdout.write(c.opts.json ? json({ killed: true, jobId, frame, host: record.host, slot: record.slot, attempt: record.attempt }) : `killed frame ${jobId}:${frame} on ${record.host}/${record.slot ?? '-'} (attempt ${record.attempt}); the scheduler retries it like a failure\n`);
      return ExitCode.Ok;
    }
    if (c.opts.follow) return await follow(c, fc, job, record, logPath);
    if (c.opts.log) {
      const text = await readLog(logPath);
      if (text === null) throw new FarmError('RB_BAD_ARGUMENT', `frame ${jobId}:${frame} has no log${logPath ? ` (${logPath} is not there: the task printed nothing, or the file is not reachable from here)` : ' (it has not started)'}`);
      c.io.stdout.write(c.opts.json ? json({ jobId, frame, logPath, log: text }) : text);
      return ExitCode.Ok;
    }
    // while it waits for the process's figures, it listens for the renderer's own progress
    const { result: live, percent } = record.state === 'running' ? await progressDuring(fc, jobId, frame, () => nextLiveStats(fc, jobId, frame, 3_000)) : { result: null, percent: undefined };
    const log = await readLog(logPath);
    c.io.stdout.write(c.opts.json ? json({ jobId, frame: record, live, ...(percent !== undefined ? { percent } : {}), logPath, log }) : describeFrame(job, record, live, logPath, log, paint(c.io.stdout), percent));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/**
 * Prints the log file from the start and then what is appended, polling it every 200 ms, until
 * the frame's attempt ends (its done, failed or retrying event, or the scheduler's record says
 * so). The file is read where the CLI runs: the shared filesystem the farm writes to.
 */
async function follow(c: CommandContext<FrameOptions>, fc: FarmClient, job: JobDetail, record: FrameRecord, firstPath: string | null): Promise<number> {
  let ended = false;
  const sub = fc.nc.subscribe(subjects.jobFrameEvents(fc.site, job.jobId), {
    callback: (err, m) => {
      if (err) return;
      try {
        const ev = codecs.frameEvent.decode(m.data);
        if (['done', 'failed', 'retrying'].includes(ev.event) && eventFrames(ev).some((f) => f.frame === record.frame)) ended = true;
      } catch {
        // not a frame event of ours
      }
    },
  });
  let path = firstPath;
  let offset = 0;
  let lastCheck = Date.now();
  const emit = (text: string) => {
    c.io.stdout.write(c.opts.json ? json({ log: text }) : text);
  };
  const readMore = async () => {
    if (!path) return;
    const size = await stat(path).then((s) => s.size, () => -1);
    if (size <= offset) return;
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(size - offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      offset += bytesRead;
      if (bytesRead > 0) emit(buf.subarray(0, bytesRead).toString('utf8'));
    } finally {
      await fh.close();
    }
  };
  try {
    let running = record.state === 'running';
    while (running && !ended) {
      await readMore();
      await sleep(200);
      // the event may have gone out before we listened: ask the scheduler now and then
      if (Date.now() - lastCheck > 2_000) {
        lastCheck = Date.now();
        const now = await loadFrame(fc, job.jobId, record.frame).catch(() => null);
        if (now && (now.record.attempt !== record.attempt || now.record.state !== 'running')) running = false;
        if (now && path === null) path = frameLogPath(now.job, now.record);
      }
    }
    // the slot closes the log a moment after the process ends
    await sleep(300);
    await readMore();
    if (!path || (offset === 0 && !running && firstPath === null)) c.io.stderr.write(`frame ${job.jobId}:${record.frame} has no log yet (it has not started)\n`);
    return ExitCode.Ok;
  } finally {
    sub.unsubscribe();
  }
}
