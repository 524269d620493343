import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import {
  FarmError, PROTOCOL_MAJOR, codecs, eventFrames, subjects, type JobDetail, type JobSummary,
} from '../../protocol/index.ts';
import { listen } from '../../actors/bus/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { ask, type FarmClient } from './farm-client.ts';
import { loadJob } from './job.ts';
import { duration, plural, type Io } from './format.ts';

export type Display = 'bar' | 'lines' | 'none';

export interface JobOutcome {
  summary: JobSummary;
  /** Final detail when the scheduler gave it (frames with hosts, times and errors). */
  detail?: JobDetail;
  failures: { frame: number; error: string }[];
}

export interface WaitOptions {
  io: Io;
  display: Display;
  /** Frames the submit reply announced, until the first summary arrives. */
  total?: number;
  /** How often to ask the scheduler, since events can be missed (notes/nats.md). */
  pollMs?: number;
  /** Warn once when the scheduler has not answered for this long. */
  silenceWarnMs?: number;
  signal?: AbortSignal;
}

const TERMINAL = new Set<string>(['done', 'failed', 'cancelled']);

/**
 * Waits until a job is done, failed or cancelled: listens to its job and frame events and
 * polls `sched.query` every 2 s as well. Shows a progress bar (terminal), plain lines (at
 * most one a second, plus the last) or nothing.
 */
export function waitForJob(fc: FarmClient, jobId: string, o: WaitOptions): Promise<JobOutcome> {
  const pollMs = o.pollMs ?? 2_000;
  const view = o.display === 'bar' ? barView(o.io) : o.display === 'lines' ? linesView(o.io, jobId) : noView();
  const log = silentLogger();
  const doneFrames = new Set<number>();
  let latest: JobSummary | undefined;
  let eventFailures: JobOutcome['failures'] | undefined;
  let shownDone = 0;
  let lastAnswer = Date.now();
  let warned = false;
  let polling = false;
  let settled = false;

  return new Promise<JobOutcome>((resolve, reject) => {
    const subs = [
      listen(fc.nc, subjects.jobEvents(fc.site, jobId), codecs.jobEvent, log, (e) => {
        if (e.failures) eventFailures = e.failures;
        onSummary(e.job);
      }),
      listen(fc.nc, subjects.jobFrameEvents(fc.site, jobId), codecs.frameEvent, log, (e) => {
        if (e.event === 'done') for (const f of eventFrames(e)) doneFrames.add(f.frame);
        render();
      }),
    ];
    const timer = setInterval(() => void poll(), pollMs);
    const cleanup = () => {
      settled = true;
      clearInterval(timer);
      for (const s of subs) s.unsubscribe();
      o.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error) => {
      if (settled) return;
      cleanup();
      view.stop();
      reject(err);
    };
    const onAbort = () => fail(new Error('stopped waiting', { cause: o.signal?.reason })); // the caller checks signal.aborted
    o.signal?.addEventListener('abort', onAbort);
    void fc.nc.closed().then(() => fail(new FarmError('RB_SCHEDULER_UNAVAILABLE', `lost the connection to the farm at ${fc.url} while waiting`)));

    function render() {
      const s = latest;
      const total = s?.counts.total ?? o.total ?? 0;
      shownDone = Math.min(total || Infinity, Math.max(shownDone, s?.counts.done ?? 0, doneFrames.size));
      view.update({ state: s?.state ?? 'submitted', done: shownDone, total, summary: s });
    }

    function onSummary(s: JobSummary) {
      if (settled) return;
      latest = s;
      render();
      if (TERMINAL.has(s.state)) void finish(s);
    }

    async function poll() {
      if (polling || settled) return;
      polling = true;
      try {
        const body = await ask(fc, 'scheduler', subjects.schedQuery(fc.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.jobReply);
        lastAnswer = Date.now();
        warned = false;
        onSummary(body.job);
      } catch (err) {
        if (err instanceof FarmError && err.code === 'RB_UNKNOWN_JOB') return fail(new FarmError('RB_UNKNOWN_JOB', `the scheduler no longer knows job ${jobId}`));
        const silence = Date.now() - lastAnswer;
        if (!warned && silence >= (o.silenceWarnMs ?? 30_000)) {
          warned = true;
          view.note(`the scheduler has not answered for ${duration(silence)}; still waiting (${(err as Error).message})`);
        }
      } finally {
        polling = false;
      }
    }

    async function finish(s: JobSummary) {
      cleanup();
      let detail: JobDetail | undefined;
      try {
        detail = await loadJob(fc, jobId);
      } catch {
        // the event already said how it ended; the detail only adds frame errors
      }
      const summary = detail ?? s;
      const failures = detail
        ? detail.frames.filter((f) => f.state === 'failed').map((f) => ({ frame: f.frame, error: f.error ?? 'no reason given' }))
        : (eventFailures ?? []);
      shownDone = Math.max(shownDone, summary.counts.done);
      view.update({ state: summary.state, done: shownDone, total: summary.counts.total, summary }, true);
      view.stop();
      resolve({ summary, failures, ...(detail ? { detail } : {}) });
    }

    void poll(); // the job may have finished before the subscriptions were in place
  });
}

interface ViewState {
  state: string;
  done: number;
  total: number;
  summary: JobSummary | undefined;
}

interface View {
  update(s: ViewState, final?: boolean): void;
  note(text: string): void;
  stop(): void;
}

/** Estimated time left: the scheduler's estimate, else the rate seen since we started watching. */
function etaOf(): (s: ViewState) => string {
  let first: { at: number; done: number } | undefined;
  return (s) => {
    if (TERMINAL.has(s.state)) return '0s';
    if (s.summary?.etaMs !== undefined) return duration(s.summary.etaMs);
    const now = Date.now();
    if (!first || s.done < first.done) first = { at: now, done: s.done };
    const rate = (s.done - first.done) / (now - first.at);
    return rate > 0 ? duration((s.total - s.done) / rate) : '-';
  };
}

function statusOf(s: ViewState): string {
  const c = s.summary?.counts;
  const parts: string[] = [s.state];
  // frame events can be ahead of the last summary: what is done is no longer running
  const running = c ? Math.min(c.running, Math.max(0, c.total - s.done - c.failed)) : 0;
  if (running > 0) parts.push(`${running} running`);
  if (c?.inHand) parts.push(`${c.inHand} in hand`);
  if (c && c.failed > 0) parts.push(`${c.failed} failed`);
  if (s.summary?.waiting) parts.push(`waiting: ${s.summary.waiting}`);
  return parts.join(', ');
}

function barView(io: Io): View {
  const eta = etaOf();
  const multi = new MultiBar(
    {
      stream: io.stderr,
      format: ` {bar} {value}/{total} frames {percentage}% | ETA {etaText} | {status}`,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      barsize: 30,
    },
    Presets.shades_classic,
  );
  let bar: SingleBar | undefined;
  let stopped = false;
  return {
    update(s) {
      if (stopped) return;
      const payload = { etaText: eta(s), status: statusOf(s) };
      if (!bar) bar = multi.create(Math.max(s.total, 1), s.done, payload);
      bar.setTotal(Math.max(s.total, 1));
      bar.update(s.done, payload);
    },
    note(text) {
      if (!stopped) multi.log(`${text}\n`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi.stop();
    },
  };
}

function linesView(io: Io, jobId: string): View {
  const eta = etaOf();
  let lastAt = 0;
  let lastLine = '';
  let pending: string | undefined;
  return {
    update(s, final = false) {
      const e = TERMINAL.has(s.state) ? '-' : eta(s);
      const etaText = e === '-' ? '' : `, ETA ${e}`;
      const line = `job ${jobId}: ${s.done}/${plural(s.total, 'frame')} done, ${statusOf(s)}${etaText}`;
      const now = Date.now();
      if (line === lastLine) return;
      if (final || now - lastAt >= 1_000) {
        io.stderr.write(`${line}\n`);
        lastAt = now;
        lastLine = line;
        pending = undefined;
      } else {
        pending = line;
      }
    },
    note(text) {
      io.stderr.write(`${text}\n`);
    },
    stop() {
      // a throttled line is dropped only when a later line replaced it; say the last one
      if (pending !== undefined && pending !== lastLine) io.stderr.write(`${pending}\n`);
      pending = undefined;
    },
  };
}

function noView(): View {
  return { update() {}, note() {}, stop() {} };
}
