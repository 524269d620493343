import { access, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call } from '../../actors/bus/index.ts';
import { openJobEventFeed, type JobEventFeed } from '../../actors/notifier/index.ts';
import { cancelBundleId, codecs, FarmError, jobBundleId, PROTOCOL_MAJOR, subjects, type JobDetail, type JobEvent, type JobSpec, type RemoteUpdate } from '../../protocol/index.ts';
import { writeBundle, type BundleSource } from '../bundles/index.ts';
import { ensureHotFolders, hotFolderDirs } from '../hotfolders/index.ts';
import { loadResultKey, type ResultKey } from '../links/result-key.ts';
import { loadSiteKey, type SiteKey } from '../links/site-key.ts';

/** The packer's durable consumer of the site's event stream. */
export const PACKER_CONSUMER = 'outsource-packer';

export interface PackerOptions {
  site: string;
  dataDir: string;
  /** The intake's connection: a durable consumer of the event stream, `sched.query`, `sched.remote.*`. */
  nc: NatsConnection;
  peers: readonly string[];
  log: Logger;
  /**
   * The site's policy (`renderbus up --encrypt-results`): every outsourced job's files come back
   * encrypted to the site's result key, as if it said `encryptResults` (docs/federation.md,
   * "Encrypted results"); `{ purge: false }` lets the vendor keep its clear copies.
   */
  encryptResults?: JobSpec['encryptResults'];
  now?: () => number;
  /**
   * A peer's job this site passes on (chaining: sites/remote-jobs/forward.ts): the owner's
   * description, its files from the intake's tree and its path; undefined for our own jobs.
   */
  forward?(job: JobDetail): Promise<{ spec: JobSpec; files: BundleSource[]; route: string[] } | undefined>;
}

/**
 * Whether a job's results come back encrypted, and whether the vendor must purge its clear
 * copies: the stricter of the job's `encryptResults` and the site's policy (a job cannot opt out
 * of the site's; `true` means purge). Null: results come back in clear.
 */
export function resultEncryption(job: JobSpec['encryptResults'], site: JobSpec['encryptResults']): { purge: boolean } | null {
  const of = (v: JobSpec['encryptResults']) => (v === undefined || v === false ? null : v === true ? { purge: true } : v);
  const j = of(job);
  const s = of(site);
  if (!j && !s) return null;
  return { purge: (j?.purge ?? false) || (s?.purge ?? false) };
}

export interface Packer {
  /** Handled events, for tests: what the packer did with each. */
  readonly outcomes: { jobId: string; event: string; did: 'wrote' | 'had' | 'failed' | 'ignored'; file?: string; why?: string }[];
  stop(): Promise<void>;
}

/**
 * The studio's packer: follows the job events through a durable consumer (events published while
 * it was down are delivered when it starts). On `outsourced`, it writes the job's bundle (its
 * scene and support files, the job description) into `outgoing/<peer>/`; on `cancelled` of an
 * outsourced job, a `status` bundle whose state is `cancel`. Each bundle's id comes from the job
 * id, and a bundle already in outgoing/, processed/ or failed/ is not written again, so an event
 * told twice (a redelivery, a scheduler restart) writes nothing twice.
 */
export async function startPacker(o: PackerOptions): Promise<Packer> {
  const log = o.log.child({ actor: 'outsource-packer' });
  const now = o.now ?? Date.now;
  const outcomes: Packer['outcomes'] = [];
  for (const peer of o.peers) await ensureHotFolders(o.dataDir, peer);
  let chain = Promise.resolve();
  let key: Promise<SiteKey> | undefined;
  const siteKey = () => (key ??= loadSiteKey(o.dataDir)); // every bundle signed: the peer's intake requires it
  let rkey: Promise<ResultKey> | undefined;
  const resultKey = () => (rkey ??= loadResultKey(o.dataDir));

  const handle = async (evt: JobEvent): Promise<void> => {
    const out = evt.job.outsourced;
    const relevant = out !== undefined && (evt.event === 'outsourced' || evt.event === 'cancelled');
    if (!relevant) return;
    if (!o.peers.includes(out.site)) {
      log.warn({ jobId: evt.jobId, peer: out.site }, 'a job was outsourced to a site that is not one of our peers; no bundle written');
      outcomes.push({ jobId: evt.jobId, event: evt.event, did: 'ignored' });
      return;
    }
    try {
      const r = evt.event === 'outsourced' ? await packJob(evt.jobId, out.site) : await packCancel(evt, out.site);
      outcomes.push({ jobId: evt.jobId, event: evt.event, ...r });
    } catch (err) {
      const e = FarmError.from(err, 'RB_OUTPUT_FAILED');
      if (e.retryable) throw e; // the event is delivered again
      log.error({ err: e, jobId: evt.jobId, peer: out.site }, 'could not write the bundle of an outsourced job; the job fails');
      outcomes.push({ jobId: evt.jobId, event: evt.event, did: 'failed' });
      if (evt.event === 'outsourced') await tellFailed(evt.jobId, out.site, e);
    }
  };

  /** Where a bundle of this id may already be: waiting, sent, or failed. */
  const existing = async (peer: string, id: string): Promise<string | undefined> => {
    const d = hotFolderDirs(o.dataDir, peer);
    for (const dir of [d.outgoing, d.processed, d.failed]) {
      const f = join(dir, `${id}.rbb`);
      if (await access(f).then(() => true, () => false)) return f;
    }
    return undefined;
  };

  async function packJob(jobId: string, peer: string): Promise<{ did: 'wrote' | 'had' | 'ignored'; file?: string; why?: string }> {
    const id = jobBundleId(jobId);
    const had = await existing(peer, id);
    if (had) return { did: 'had', file: had };
    const body = await call(o.nc, subjects.schedQuery(o.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId, limit: 1 }, codecs.queryReply, { timeoutMs: 5_000, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });
    if (!('job' in body)) throw new FarmError('RB_UNKNOWN_JOB', `the scheduler did not describe job ${jobId}`);
    // an old event (a new consumer reads the stream's history; a redelivery after a long outage):
    // a job that ended, or that the vendor already heard of, is not sent (again)
    if (body.job.state !== 'outsourced' || body.job.outsourced?.state !== 'sent') return { did: 'ignored', why: `job is ${body.job.state}${body.job.outsourced ? `, ${body.job.outsourced.state} at ${peer}` : ''}` };
    const spec = body.job.spec;
    const out = join(hotFolderDirs(o.dataDir, peer).outgoing, `${id}.rbb`);
    await rm(`${out}.part`, { force: true }); // ours, left by a packer that died mid-write: this id is only ever written here
    // a peer's job passed on (chaining) goes from its tree, with its owner's description and path
    const fwd = await o.forward?.(body.job);
    const own = fwd ? undefined : jobBundleOf(spec, body.job.outputDir);
    const files = fwd?.files ?? own!.files;
    // the public half of our result key, in the signed manifest: the vendor knows it is ours
    const enc = resultEncryption(spec.encryptResults, o.encryptResults);
    const encryptResults = enc ? { encryptResults: { to: (await resultKey()).recipient, purge: enc.purge } } : {};
    await writeBundle({
      head: { kind: 'job', bundleId: id, from: o.site, to: peer, route: fwd?.route ?? [o.site], jobRef: { site: o.site, job: jobId }, job: fwd?.spec ?? own!.job, ...encryptResults },
      files,
      out,
      dataDir: o.dataDir,
      sign: await siteKey(),
    });
    log.info({ jobId, peer, bundle: out, files: files.length, encryptResults: enc ?? false }, 'job bundle written');
    return { did: 'wrote', file: out };
  }

  async function packCancel(evt: JobEvent, peer: string): Promise<{ did: 'wrote' | 'had' | 'ignored'; file?: string; why?: string }> {
    const id = cancelBundleId(evt.jobId);
    const had = await existing(peer, id);
    if (had) return { did: 'had', file: had };
    // cancelled before its bundle was written: the vendor never hears of it
    if (!(await existing(peer, jobBundleId(evt.jobId)))) return { did: 'ignored', why: 'its job bundle was never written' };
    const out = join(hotFolderDirs(o.dataDir, peer).outgoing, `${id}.rbb`);
    await rm(`${out}.part`, { force: true });
    await writeBundle({
      head: { kind: 'status', bundleId: id, from: o.site, to: peer, route: [o.site], jobRef: { site: o.site, job: evt.jobId }, status: { state: 'cancel', reason: `cancelled at ${o.site}`, at: evt.at } },
      files: [],
      out,
      dataDir: o.dataDir,
      sign: await siteKey(),
    });
    log.info({ jobId: evt.jobId, peer, bundle: out }, 'cancel bundle written');
    return { did: 'wrote', file: out };
  }

  /** A job whose bundle cannot be written never leaves: it fails at the studio, with the reason. */
  async function tellFailed(jobId: string, peer: string, err: FarmError): Promise<void> {
    const u: RemoteUpdate = { v: PROTOCOL_MAJOR, jobId, bundleId: `pack-${jobId}`, state: 'failed', reason: `never sent: its bundle could not be written at ${o.site} (${err.code}: ${err.message})`, at: now() };
    await call(o.nc, subjects.schedRemote(o.site, peer), codecs.remoteUpdate, u, codecs.remoteUpdateReply, { timeoutMs: 5_000, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });
  }

  const onEvent = (evt: JobEvent, m: JsMsg) => {
    chain = chain.then(async () => {
      const busy = setInterval(() => m.working(), 10_000); // a large bundle takes longer than the ack wait
      try {
        await handle(evt);
        m.ack();
      } catch (err) {
        log.warn({ err, jobId: evt.jobId, event: evt.event }, 'packing failed; the event comes again');
        m.nak(5_000);
      } finally {
        clearInterval(busy);
      }
    });
  };
  const feed: JobEventFeed = await openJobEventFeed(o.nc, o.site, log, onEvent, { consumer: PACKER_CONSUMER, deliver: 'all' });
  return {
    outcomes,
    stop: async () => {
      await feed.stop();
      await chain;
    },
  };
}

/**
 * What a job's bundle carries (pure): its scene and support files (relative ones resolved against
 * the scene's folder) and its description for the vendor. A re-render sent to a site names the
 * job whose inputs that site kept, and carries no file (docs/federation.md, "Retention and
 * re-renders"); a local job's re-render that the site's policy sends out names no site, so it goes
 * with its files as a job of its own, without `rerenderOf` (the vendor never saw the job it names).
 */
export function jobBundleOf(spec: JobSpec, outputDir: string): { files: string[]; job: JobSpec } {
  const { rerenderOf, ...plain } = spec;
  if (rerenderOf !== undefined && spec.site !== undefined) return { files: [], job: forVendor(spec, outputDir) };
  return { files: [spec.scene, ...(spec.supportFiles ?? []).map((f) => resolve(dirname(spec.scene), f))], job: forVendor(plain, outputDir) };
}

/**
 * The job description as the vendor gets it: where its frames land (`output`, so the vendor writes
 * the same paths), without what only means something here: the site it names (the vendor
 * itself, or `auto`), the client's notifications, waiting for local jobs, being held, the budget
 * (what the studio would pay is its own business, not the vendor's) and `encryptResults` (the
 * manifest's own field says it, with the key).
 */
export function forVendor(spec: JobSpec, outputDir: string): JobSpec {
  const { site: _site, notify: _notify, after: _after, afterFrames: _afterFrames, hold: _hold, budget: _budget, encryptResults: _enc, ...rest } = spec;
  return { ...rest, output: { ...spec.output, dir: outputDir } };
}
