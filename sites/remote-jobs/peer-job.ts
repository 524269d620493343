import { randomBytes } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call } from '../../actors/bus/index.ts';
import {
  BundleKind, FarmError, PROTOCOL_MAJOR, RemoteJobState, chainProblem, codecs, forwardChoice, jobPath, manifestBlobs, prepareJob, subjects,
  type BundleManifest, type JobSpec, type MatchBody,
} from '../../protocol/index.ts';
import { checkRecipient } from '../bundles/index.ts';
import { PeerCas } from '../cas/index.ts';
import type { ArrivedBundle } from '../intake/index.ts';
import { sendOnce, type OutboxOptions } from './outbox.ts';
import { localSpec, remoteJobPaths, sampleFrames, treePath } from './path-map.ts';
import type { RemoteJobRecord, RemoteJobRecords } from './records.ts';
import { planRerender, RerenderRefused, treeIsWhole } from './rerender.ts';

export interface PeerJobOptions extends OutboxOptions {
  nc: NatsConnection;
  records: RemoteJobRecords;
  log: Logger;
  /** How long the scheduler and registry get to answer. */
  timeoutMs?: number;
  /** Runs a re-render's intake apart from the retention sweep (index.ts), so a tree is never removed under it. */
  exclusive?: <T>(f: () => Promise<T>) => Promise<T>;
  /**
   * The peers this site's policy sends jobs no host here can render to, in order, linked now
   * (`--outsource-unrenderable`): a peer's job that consents to chaining is passed on to them.
   */
  forwardTo?(): readonly string[];
}

/** Why no host here can render a job, from the registry's answer; null when some host can. */
export function noHostReason(site: string, m: MatchBody): string | null {
  if (m.hosts.length > 0) return null;
  if (m.totalHosts === 0) return `no render host is registered at ${site}`;
  const closest = m.closest.map((c) => `${c.host}: ${c.missing.join(', ')}`).join('; ');
  return `no host at ${site} can render it${closest ? ` (closest: ${closest})` : ''}`;
}

/**
 * The peerJob half of the intake (sites/intake/router.ts): work a peer sends us. The router has
 * already checked the sender, the addressee, the job ref, every blob and the signature.
 *
 * A job bundle: its blobs go into the peer's content store, its tree is made under
 * `<data>/fed/jobs/<peer>/<their job>/` (path-map.ts), the registry is asked whether any host
 * here can render it, and it is submitted on `sched.intake.<peer>` (the scheduler submits an
 * origin once) and answered `accepted` with our job id, or `rejected` with the reason. A
 * cancel: the scheduler cancels the job; the returner sends `cancelled` and the partial bill.
 * Every step can run again: a bundle handed over twice (a crash before the watcher moved it)
 * queues nothing twice and sends no answer twice.
 */
export function peerJobHandler(o: PeerJobOptions): (b: ArrivedBundle) => Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const log = o.log;

  const reject = async (b: ArrivedBundle, theirSpec: JobSpec, reason: string) => {
    const rec: RemoteJobRecord = { v: 1, peer: b.peer, originJob: b.manifest.jobRef!.job, bundleId: b.manifest.bundleId, state: 'rejected', reason, theirSpec, samples: [], route: jobPath(b.manifest), at: Date.now() };
    await sendOnce(o, rec, { kind: BundleKind.Status, what: 'rejected', status: { state: RemoteJobState.Rejected, reason, at: rec.at } });
    await o.records.put(rec);
    log.info({ peer: b.peer, originJob: rec.originJob, reason }, 'peer job rejected');
  };

  const intake = (peer: string, req: Parameters<typeof codecs.intakeRequest.encode>[0]) =>
    call(o.nc, subjects.schedIntake(o.site, peer), codecs.intakeRequest, req, codecs.intakeReply, { timeoutMs, unavailable: 'RB_SCHEDULER_UNAVAILABLE' });

  async function job(b: ArrivedBundle): Promise<void> {
    const m = b.manifest;
    const originJob = m.jobRef!.job;
    const theirSpec = m.job!;
    const known = o.records.get(b.peer, originJob);
    if (known) {
      // the same job again (a replayed or re-sent bundle): its answer went out, or goes out now
      await answer(known);
      return;
    }
    // the path it came along: a loop, a job passed on without consent, a path too long (chain.ts)
    const chained = chainProblem(o.site, { ...m, job: theirSpec });
    if (chained) {
      if (chained.code === 'RB_BAD_BUNDLE') throw chained;
      return reject(b, theirSpec, `${chained.code}: ${chained.message}`);
    }
    if (theirSpec.rerenderOf !== undefined) return (o.exclusive ?? ((f) => f()))(() => rerender(b));
    const paths = remoteJobPaths(o.dataDir, b.peer, originJob);
    let spec: JobSpec;
    let requirements;
    try {
      // results we could not encrypt would never go back: refused now, not after the render
      if (m.encryptResults) checkRecipient(m.encryptResults.to, 'its encryptResults.to');
      spec = localSpec(theirSpec, { peer: b.peer, paths, files: new Set(m.files.map((f) => f.path)) });
      requirements = prepareJob(spec).requirements;
    } catch (err) {
      const fe = FarmError.from(err);
      if (fe.code === 'RB_BAD_SUBJECT_TOKEN') throw fe;
      return reject(b, theirSpec, `${fe.code}: ${fe.message}`);
    }
    const match = await call(o.nc, subjects.regMatch(o.site), codecs.matchRequest, { v: PROTOCOL_MAJOR, requirements }, codecs.matchReply, { timeoutMs, unavailable: 'RB_REGISTRY_UNAVAILABLE' });
    const why = noHostReason(o.site, match);
    let forwardTo: string | undefined;
    if (why) {
      // no host here: a job whose owner consented goes on where our policy sends such jobs (chaining)
      const fwd = forwardChoice(theirSpec, jobPath(m), o.site, o.forwardTo?.() ?? []);
      if ('why' in fwd) return reject(b, theirSpec, theirSpec.chain === true ? `${why}; not passed on: ${fwd.why}` : why);
      forwardTo = fwd.to;
    }
    // the peer's area: the service (and its group: render hosts sharing the disk) read it, nobody else
    await mkdir(dirname(paths.dir), { recursive: true, mode: 0o750 });
    await buildTree(b, paths.root);
    await mkdir(paths.out, { recursive: true });
    const reply = await intake(b.peer, { v: PROTOCOL_MAJOR, kind: 'submit', originJob, spec });
    const rec: RemoteJobRecord = {
      v: 1, peer: b.peer, originJob, bundleId: m.bundleId, state: 'accepted', jobId: reply.jobId, theirSpec, samples: sampleFrames(theirSpec.frames), route: jobPath(m),
      ...(forwardTo ? { forwardTo } : {}), at: Date.now(),
      ...(m.encryptResults ? { encryptResults: m.encryptResults } : {}),
    };
    // the answer goes out before the record: the returner waits for the record, so `accepted`
    // is always dropped before `started`
    await answer(rec);
    await o.records.put(rec);
    log.info({ peer: b.peer, originJob, jobId: reply.jobId, existing: reply.existing, ...(forwardTo ? { forwardTo } : {}) }, 'peer job accepted');
  }

  /** A re-render (rerender.ts): no files came; the kept tree of the job it names is rendered again. */
  async function rerender(b: ArrivedBundle): Promise<void> {
    const m = b.manifest;
    const originJob = m.jobRef!.job;
    let plan;
    try {
      plan = planRerender({ site: o.site, dataDir: o.dataDir, records: o.records, peer: b.peer, manifest: m });
      if (!(await treeIsWhole(plan))) throw new RerenderRefused(`inputs of ${plan.original.originJob} are no longer kept at ${o.site}`);
    } catch (err) {
      if (err instanceof RerenderRefused) return reject(b, m.job!, err.message);
      throw err;
    }
    const match = await call(o.nc, subjects.regMatch(o.site), codecs.matchRequest, { v: PROTOCOL_MAJOR, requirements: prepareJob(plan.spec).requirements }, codecs.matchReply, { timeoutMs, unavailable: 'RB_REGISTRY_UNAVAILABLE' });
    const why = noHostReason(o.site, match);
    if (why) return reject(b, m.job!, why);
    await mkdir(plan.paths.out, { recursive: true });
    const reply = await intake(b.peer, { v: PROTOCOL_MAJOR, kind: 'submit', originJob, spec: plan.spec });
    const rec: RemoteJobRecord = { v: 1, peer: b.peer, originJob, bundleId: m.bundleId, state: 'accepted', jobId: reply.jobId, theirSpec: plan.theirSpec, samples: sampleFrames(plan.theirSpec.frames), at: Date.now(), rerenderOf: plan.original.originJob };
    await answer(rec);
    await o.records.put(rec);
    log.info({ peer: b.peer, originJob, rerenderOf: rec.rerenderOf, jobId: reply.jobId, existing: reply.existing }, 'peer re-render accepted');
  }

  const answer = async (rec: RemoteJobRecord) => {
    if (rec.state === 'rejected') {
      await sendOnce(o, rec, { kind: BundleKind.Status, what: 'rejected', status: { state: RemoteJobState.Rejected, reason: rec.reason ?? 'rejected', at: rec.at } });
      return;
    }
    await sendOnce(o, rec, { kind: BundleKind.Status, what: 'accepted', status: { state: RemoteJobState.Accepted, remoteJob: rec.jobId!, at: rec.at } });
  };

  /** The blobs into the peer's store (moved, not copied: the reader wrote them on this filesystem), then linked into the job's tree. */
  async function buildTree(b: ArrivedBundle, root: string): Promise<void> {
    const cas = await PeerCas.open(o.dataDir, b.peer);
    const sizes = manifestBlobs(b.manifest);
    // a file that came in chunks is stored whole as well (the reader joined and checked it): the job's tree links to it
    for (const f of b.manifest.files) if (f.chunks) sizes.set(f.sha256, f.size);
    for (const [sha256, size] of sizes) {
      const from = b.blobs.get(sha256);
      if (!from) continue; // the reader gives every blob; nothing to take here
      const tmp = join(cas.root, 'tmp', `${sha256}.${randomBytes(4).toString('hex')}`);
      const moved = await rename(from, tmp).then(() => true, () => false);
      if (moved) await cas.adopt(tmp, sha256, size, { deferDirSync: true });
      else await cas.put(from, sha256, size, { deferDirSync: true });
    }
    await cas.flush();
    await cas.addRef(`job-${b.manifest.jobRef!.job}`, [...sizes.keys()]);
    await mkdir(root, { recursive: true });
    for (const f of b.manifest.files) {
      await cas.linkOut(f.sha256, treePath(root, f.path));
    }
  }

  async function cancel(b: ArrivedBundle): Promise<void> {
    const originJob = b.manifest.jobRef!.job;
    const rec = o.records.get(b.peer, originJob);
    if (!rec || rec.state !== 'accepted') {
      // nothing runs here for it: say so, once
      await sendOnce(o, { peer: b.peer, originJob }, { kind: BundleKind.Status, what: 'cancelled', status: { state: RemoteJobState.Cancelled, reason: rec ? `it was rejected: ${rec.reason ?? ''}` : `${o.site} never received that job`, at: Date.now() } });
      return;
    }
    const reply = await intake(b.peer, { v: PROTOCOL_MAJOR, kind: 'cancel', originJob });
    log.info({ peer: b.peer, originJob, jobId: reply.jobId, state: reply.state }, 'peer job cancel');
  }

  return async (b: ArrivedBundle) => {
    const m: BundleManifest = b.manifest;
    if (m.kind === BundleKind.Job) return job(b);
    if (m.kind === BundleKind.Status && m.status?.state === RemoteJobState.Cancel) return cancel(b);
    throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId} (${m.kind}) is not work this site takes`);
  };
}

/**
 * Answers a job bundle the intake refused before reading it (the peer's quota: sites/intake
 * quota.ts), so the studio's job does not wait for ever: `rejected` with the reason, sent once. It
 * is not recorded as a rejected job: the same job sent again once there is room is taken.
 */
export function refusedHandler(o: PeerJobOptions): (b: ArrivedBundle, err: FarmError) => Promise<void> {
  return async (b, err) => {
    const originJob = b.manifest.jobRef!.job;
    if (b.manifest.kind !== BundleKind.Job || o.records.get(b.peer, originJob)) return; // a job taken already has its answer
    const reason = `${err.code}: ${err.message}`;
    await sendOnce(o, { peer: b.peer, originJob }, { kind: BundleKind.Status, what: 'rejected', status: { state: RemoteJobState.Rejected, reason, at: Date.now() } });
    o.log.warn({ peer: b.peer, originJob, reason }, 'peer job refused before it was read');
  };
}
