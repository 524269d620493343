import { lstat, mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { thumbnail } from '../../actors/media/index.ts';
import { openEventFeed, type JobEventFeed } from '../../actors/notifier/index.ts';
import { projectOf, wholeJob } from '../../actors/scheduler/index.ts';
import { taskPaths } from '../../actors/render-slot/index.ts';
import {
  BundleKind, FarmError, PROTOCOL_MAJOR, RemoteJobState, codecs, eventFrames, subjects, taskId,
  type BundleStatus, type FrameEvent, type FrameRecord, type JobEvent, type JobSummary,
} from '../../protocol/index.ts';
import { call } from '../../actors/bus/index.ts';
import { billOf, type RateCard } from './bill.ts';
import { chainedBill, forwardedLogs, keptBills, newsRoute } from './forward.ts';
import { bundleIdFor, sendOnce, type OutboxOptions, type OutgoingBundle } from './outbox.ts';
import { keepIssuedBill } from '../bills/index.ts';
import { originalOutput, originalSample, remoteJobPaths } from './path-map.ts';
import type { RemoteJobRecord } from './records.ts';
import { purgeClear } from './seal.ts';
import type { BundleSource } from '../bundles/index.ts';
import { writeFileAtomically } from '../write-atomically.ts';

/** The returner's durable consumer of the event stream. */
export const RETURNER_CONSUMER = 'remote-jobs';
/** A sample thumbnail fits this box (a few tens of KiB as PNG). */
export const SAMPLE_BOX = { width: 320, height: 320 } as const;
/** How soon an event of a job whose record is not written yet is looked at again. */
const NOT_YET_MS = 250;
/** An event that keeps failing (the scheduler away, a full disk) is tried again this often, … */
const RETRY_MS = 2_000;
/** … and given up after this many deliveries (logged: an operator re-sends by hand). */
const MAX_DELIVERIES = 200;
/** A job passed on (chaining): how long after it ended our bill waits for the next site's, then goes without it. */
export const CHAIN_BILL_WAIT_MS = 60_000;

export interface ReturnerOptions extends OutboxOptions {
  nc: NatsConnection;
  log: Logger;
  rates(peer: string): Promise<RateCard>;
  timeoutMs?: number;
}

export interface Returner {
  stop(): Promise<void>;
}

/** A status of the job for a status bundle, with its frame counts. */
function statusOf(state: BundleStatus['state'], job: JobSummary, reason?: string): BundleStatus {
  const c = job.counts;
  return { state, remoteJob: job.jobId, frames: { total: c.total, done: c.done, failed: c.failed, running: c.running }, at: Date.now(), ...(reason ? { reason } : {}) };
}

const exists = (path: string) => lstat(path).then((s) => s.isFile(), () => false);

/**
 * Sends back what becomes of the peers' jobs (docs/federation.md, "Intake at the vendor"),
 * reading the site's event stream through a durable consumer of its own: an event is acked only
 * once its bundles are in outgoing/, so a returner stopped or killed mid-job takes up where it
 * was, and bundle ids are deterministic (outbox.ts), so an event seen twice writes nothing twice.
 * For the peers' jobs only (the job event carries `origin`; frame events are looked up by job id):
 * started → `status: started`; a task done → `partial-result` (its frames under the studio's
 * output.dir, its log), and for the first, last and middle frames a `status: progress` with a
 * thumbnail; done → `result` (every frame and log) and the signed `bill`; failed or cancelled →
 * that status and the partial bill.
 */
export async function startReturner(o: ReturnerOptions): Promise<Returner> {
  const log = o.log;
  const timeoutMs = o.timeoutMs ?? 10_000;
  /** Jobs a job event said are a peer's, whose record is not written yet: their frame events wait too. */
  const pending = new Set<string>();
  let chain = Promise.resolve();
  let stopped = false;

  /** Drops a bundle about `job`; a job we passed on says where it went (its route: [us, v2, …]). */
  const send = (rec: RemoteJobRecord, b: OutgoingBundle, job: Pick<JobSummary, 'outsourced'>) => {
    const route = newsRoute(o.site, job);
    return sendOnce(o, rec, route ? { ...b, route } : b);
  };
  const paths = (rec: RemoteJobRecord) => remoteJobPaths(o.dataDir, rec.peer, rec.originJob);
  const theirOut = (rec: RemoteJobRecord) => rec.theirSpec.output!.dir!;

  /** A task's log here, if it wrote one (a task that said nothing leaves none). */
  const logOf = async (jobId: string, taskIndex: number, attempt: number, out: string): Promise<string | undefined> => {
    const file = taskPaths(out, taskId(jobId, taskIndex), attempt).logFile;
    return (await exists(file)) ? file : undefined;
  };

  /** The files of some done frames: each frame and its task's log, under the studio's paths. */
  const filesOf = async (rec: RemoteJobRecord, frames: readonly FrameRecord[]) => {
    const p = paths(rec);
    const files: BundleSource[] = [];
    const outputs: string[] = [];
    const logs: string[] = [];
    const seenLogs = new Set<string>();
    for (const f of frames) {
      if (f.state !== 'done' || f.output === undefined) continue;
      const path = originalOutput(p, theirOut(rec), f.output);
      files.push({ path, from: f.output });
      outputs.push(path);
      const logFile = await logOf(rec.jobId!, f.taskIndex, f.attempt, p.out);
      if (logFile && !seenLogs.has(logFile)) {
        seenLogs.add(logFile);
        const logPath = originalOutput(p, theirOut(rec), logFile);
        files.push({ path: logPath, from: logFile });
        logs.push(logPath);
      }
    }
    return { files, outputs, logs };
  };

  const jobPage = (jobId: string, afterFrame: number | undefined, limit: number) =>
    call(o.nc, subjects.schedQuery(o.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId, limit, ...(afterFrame !== undefined ? { afterFrame } : {}) }, codecs.jobReply, { timeoutMs, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });

  /** A sample frame's thumbnail, written once beside the job (`samples/`), for its progress bundle. */
  const sampleFile = async (rec: RemoteJobRecord, frameFile: string): Promise<string> => {
    const dir = paths(rec).samples;
    const file = join(dir, `${basename(frameFile)}.png`);
    if (await exists(file)) return file;
    await mkdir(dir, { recursive: true });
    const png = await thumbnail(frameFile, { ...SAMPLE_BOX, format: 'png' });
    await writeFileAtomically(file, png, 0o644);
    return file;
  };

  async function onFramesDone(rec: RemoteJobRecord, evt: FrameEvent): Promise<void> {
    // a frame event come again after the job's clear files were purged: the result carried it
    if (rec.encryptResults?.purge && (await o.records.wasSent(rec, bundleIdFor(o.site, rec.originJob, 'bill')))) return;
    const frames = eventFrames(evt).map((f) => f.frame);
    const first = Math.min(...frames);
    const body = await jobPage(rec.jobId!, first > 0 ? first - 1 : undefined, frames.length);
    const mine = new Set(frames);
    const records = body.job.frames.filter((f) => mine.has(f.frame) && f.state === 'done');
    if (records.length === 0) return; // retried or cancelled since: nothing of it to send
    const { files, outputs, logs } = await filesOf(rec, records);
    const task = records[0]!;
    // an early look first: a thumbnail of a few tens of KiB crosses ahead of its frame, which may be large
    for (const f of records) {
      if (!rec.samples.includes(f.frame) || f.output === undefined) continue;
      const thumb = await sampleFile(rec, f.output);
      const path = originalSample(theirOut(rec), basename(thumb));
      await send(rec, { kind: BundleKind.Status, what: `sample-f${f.frame}`, files: [{ path, from: thumb }], status: statusOf(RemoteJobState.Progress, body.job) }, body.job);
    }
    await send(rec, { kind: BundleKind.PartialResult, what: `t${task.taskIndex}-a${task.attempt}`, job: rec.theirSpec, files, outputs, logs, status: statusOf(RemoteJobState.Progress, body.job) }, body.job);
  }

  async function billBundle(rec: RemoteJobRecord, frames: readonly FrameRecord[], job: JobSummary, endedAt: number): Promise<void> {
    const rates = await o.rates(rec.peer);
    let bill = billOf(frames, rates);
    const next = job.outsourced;
    if (next) {
      // a job we passed on: our bill carries the next site's as it came, so we wait for it a while
      const kept = await keptBills(o.dataDir, next.site, rec.jobId!);
      // one that refused it, or never answered, sends no bill
      const billed = next.state !== 'rejected' && next.state !== 'sent';
      if (kept.length === 0 && billed && Date.now() - endedAt < CHAIN_BILL_WAIT_MS) {
        throw new FarmError('RB_REMOTE_FAILED', `job ${rec.jobId} ended; its bill waits for ${next.site}'s`, { retryable: true });
      }
      if (kept.length === 0 && billed) log.warn({ jobId: rec.jobId, peer: next.site }, 'the site a job was passed on to sent no bill in time: ours goes without it');
      bill = chainedBill(bill, rates.forwardMinor ?? 0, kept);
    }
    // a copy for `renderbus bills --issued`: sent bundles leave outgoing/ (docs/federation.md, "Bills and budgets")
    const spec = rec.theirSpec;
    await keepIssuedBill(o.dataDir, rec.peer, {
      bundleId: bundleIdFor(o.site, rec.originJob, 'bill'), from: o.site, to: rec.peer, jobRef: { site: rec.peer, job: rec.originJob }, createdAt: Date.now(), signed: true,
      project: projectOf(spec), ...(spec.name !== undefined ? { jobName: spec.name } : {}), ...(spec.user !== undefined ? { user: spec.user } : {}), localJob: job.jobId, bill,
    });
    // the bill's status says why too: the owner may read it before the `failed` bundle (their names sort so)
    await send(rec, { kind: BundleKind.Bill, what: 'bill', bill, status: statusOf(job.state === 'done' ? RemoteJobState.Done : job.state === 'failed' ? RemoteJobState.Failed : RemoteJobState.Cancelled, job, job.state === 'failed' ? job.error : undefined) }, job);
  }

  async function onJobEvent(rec: RemoteJobRecord, evt: JobEvent, m: JsMsg): Promise<void> {
    const job = evt.job;
    if (evt.event === 'started') {
      await send(rec, { kind: BundleKind.Status, what: 'started', status: statusOf(RemoteJobState.Started, job) }, job);
      return;
    }
    if (evt.event !== 'done' && evt.event !== 'failed' && evt.event !== 'cancelled') return;
    const whole = (await wholeJob(o.nc, o.site, rec.jobId!, { timeoutMs })).job;
    m.working();
    if (evt.event === 'done') {
      const { files, outputs, logs } = await filesOf(rec, whole.frames);
      if (whole.outsourced) {
        // a job we passed on: the logs of the site that rendered it, as they landed here
        for (const log of await forwardedLogs(paths(rec).out, whole.outsourced.site)) {
          const path = originalOutput(paths(rec), theirOut(rec), log);
          files.push({ path, from: log });
          logs.push(path);
        }
      }
      m.working();
      await send(rec, { kind: BundleKind.Result, what: 'result', job: rec.theirSpec, files, outputs, logs, status: statusOf(RemoteJobState.Done, whole) }, whole);
    } else {
      const state = evt.event === 'failed' ? RemoteJobState.Failed : RemoteJobState.Cancelled;
      await send(rec, { kind: BundleKind.Status, what: evt.event, status: statusOf(state, whole, whole.error ?? (state === RemoteJobState.Cancelled ? 'cancelled' : undefined)) }, whole);
    }
    await billBundle(rec, whole.frames, whole, evt.at);
    if (rec.encryptResults?.purge) await purgeClear(paths(rec), log.child({ jobId: rec.jobId, peer: rec.peer, originJob: rec.originJob }));
  }

  /** One event: handled and acked, put off (nak with a delay), or dropped when it is not about a peer's job. */
  async function handle(m: JsMsg): Promise<void> {
    const isJob = m.subject.includes('.evt.job.');
    const isFrameDone = m.subject.includes('.evt.frame.') && m.subject.endsWith('.done');
    if (!isJob && !isFrameDone) return m.ack();
    let evt: JobEvent | FrameEvent;
    try {
      evt = isJob ? codecs.jobEvent.decode(m.data) : codecs.frameEvent.decode(m.data);
    } catch (err) {
      log.warn({ err, subject: m.subject, seq: m.seq }, 'dropped a malformed event');
      return m.term();
    }
    const rec = o.records.ofJob(evt.jobId);
    if (!rec) {
      const peers = isJob && (evt as JobEvent).job.origin !== undefined;
      if (peers) pending.add(evt.jobId);
      if (!peers && !pending.has(evt.jobId)) return m.ack();
      // a peer's job whose record the intake is writing right now: look again shortly, then less often
      const deliveries = m.info.deliveryCount;
      if (deliveries < MAX_DELIVERIES) return m.nak(Math.min(NOT_YET_MS * deliveries, RETRY_MS * 5));
      log.error({ jobId: evt.jobId, subject: m.subject, deliveries }, 'a peer\'s job has no record here: its news is not sent');
      return m.term();
    }
    pending.delete(evt.jobId);
    if (rec.theirSpec.output?.dir === undefined) return m.ack();
    try {
      if (isJob) await onJobEvent(rec, evt as JobEvent, m);
      else await onFramesDone(rec, evt as FrameEvent);
      m.ack();
    } catch (err) {
      const deliveries = m.info.deliveryCount;
      const fe = FarmError.from(err);
      if (deliveries >= MAX_DELIVERIES) {
        log.error({ err: fe, jobId: evt.jobId, subject: m.subject, deliveries }, 'gave up sending news of a peer\'s job');
        m.term();
        return;
      }
      log.warn({ err: fe, jobId: evt.jobId, subject: m.subject, deliveries }, 'could not send news of a peer\'s job; trying again');
      m.nak(RETRY_MS);
    }
  }

  const feed: JobEventFeed = await openEventFeed(o.nc, o.site, log, { consumer: RETURNER_CONSUMER, filter: subjects.allEvents(o.site) }, (m) => {
    // one at a time, in the stream's order: a job's bundles are dropped in the order of its events
    chain = chain.then(() => (stopped ? m.nak() : handle(m))).catch((err: unknown) => log.error({ err }, 'returner failed on an event'));
  });
  return {
    stop: async () => {
      stopped = true; // events already taken go back (nak) and come again to the next returner
      await feed.stop();
      await chain;
    },
  };
}
