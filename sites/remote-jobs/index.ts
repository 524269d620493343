import { rm } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError } from '../../protocol/index.ts';
import { loadSiteKey, type SiteKey } from '../links/site-key.ts';
import type { ArrivedBundle } from '../intake/index.ts';
import type { RateCard } from './bill.ts';
import { forwarder, type Forwarder } from './forward.ts';
import { peerJobHandler, refusedHandler } from './peer-job.ts';
import { loadRateCard } from './rate-card.ts';
import { RemoteJobRecords } from './records.ts';
import { DEFAULT_KEEP_INPUTS_MS, sweepRemoteJobs, type SweepResult } from './retention.ts';
import { startReturner } from './returner.ts';
import { sealingDir } from './seal.ts';

export { billOf, NO_RATES, type RateCard } from './bill.ts';
export { loadRateCard, rateCardOf, ratesPath } from './rate-card.ts';
export { localSpec, originalOutput, originalSample, remoteJobPaths, sampleFrames, treePath, type RemoteJobPaths } from './path-map.ts';
export { RemoteJobRecords, remoteJobsDir, type RemoteJobRecord } from './records.ts';
export { bundleIdFor } from './outbox.ts';
export { chainedBill, forwarder, keptBills, newsRoute, type ForwardedJob, type Forwarder, type KeptBill } from './forward.ts';
export { noHostReason } from './peer-job.ts';
export { RETURNER_CONSUMER, SAMPLE_BOX } from './returner.ts';
export { DEFAULT_KEEP_INPUTS_MS, DURATION_FORMS, formatKeep, inputsGoneReason, parseKeepDuration, sweepChoice, sweepRemoteJobs, type SweepChoice, type SweepFacts, type SweepResult } from './retention.ts';
export { planRerender, RerenderRefused } from './rerender.ts';

export interface RemoteJobsOptions {
  site: string;
  dataDir: string;
  /** A connection with the intake role (protocol/roles.ts). */
  nc: NatsConnection;
  /** The peers whose jobs this site takes (their hot folders are made). */
  peers: readonly string[];
  log: Logger;
  /** The rate card per peer; default: `<data>/fed/rates.json` (rate-card.ts), read for each bill. */
  rates?(peer: string): Promise<RateCard>;
  /** How long the scheduler and registry get to answer (ms). */
  timeoutMs?: number;
  /** How long an ended job's inputs are kept (`renderbus up --keep-inputs`; default 7 days). */
  keepInputsMs?: number;
  /** How often the retention sweep runs (default hourly; the first a minute after the start). */
  sweepEveryMs?: number;
  /** The peers the site's policy sends jobs no host here can render to, linked now: a consenting peer's job is passed on (chaining). */
  forwardTo?(): readonly string[];
}

export interface RemoteJobs {
  /** The peerJob half of the intake (sites/intake IntakeHandlers.peerJob). */
  peerJob(b: ArrivedBundle): Promise<void>;
  /** Answers a job bundle the intake refused unread (IntakeHandlers.refused: the peer's quota). */
  refused(b: ArrivedBundle, err: FarmError): Promise<void>;
  /** One retention sweep now (retention.ts); `now` stands in for the clock (tests). */
  sweep(o?: { now?: number }): Promise<SweepResult>;
  /** Peers' jobs passed on (chaining): for the packer (`forward`) and the ownJob half (`outputDirFor`) of sites/outsource. */
  readonly forward: Forwarder;
  stop(): Promise<void>;
}

/**
 * The vendor side of outsourcing (docs/federation.md, "Intake at the vendor"): the intake's
 * peerJob half, which takes a peer's job into the queue, and the returner, which sends its
 * status, frames, result and signed bill back. The returner starts first, so it reads every
 * event of every job the peerJob half submits.
 */
export async function startRemoteJobs(o: RemoteJobsOptions): Promise<RemoteJobs> {
  const log = o.log.child({ actor: 'remote-jobs', site: o.site });
  const records = await RemoteJobRecords.open(o.dataDir);
  // ciphertext a returner stopped mid-bundle left aside (seal.ts): no bundle uses it any more
  await rm(sealingDir(o.dataDir), { recursive: true, force: true });
  let key: Promise<SiteKey> | undefined;
  const siteKey = () => (key ??= loadSiteKey(o.dataDir));
  const outbox = { site: o.site, dataDir: o.dataDir, records, key: siteKey };
  const returner = await startReturner({ ...outbox, nc: o.nc, log, rates: o.rates ?? ((peer) => loadRateCard(o.dataDir, peer)), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
  const peers = new Set(o.peers);
  // a re-render's intake and the sweep, one at a time: a tree is never removed under a re-render being taken
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(f: () => Promise<T>): Promise<T> => {
    const run = turn.then(f, f);
    turn = run.catch(() => {});
    return run;
  };
  const jobOptions = { ...outbox, nc: o.nc, log, exclusive, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}), ...(o.forwardTo ? { forwardTo: o.forwardTo } : {}) };
  const handler = peerJobHandler(jobOptions);
  const refused = refusedHandler(jobOptions);
  const keepMs = o.keepInputsMs ?? DEFAULT_KEEP_INPUTS_MS;
  const sweep = (s: { now?: number } = {}) => exclusive(() => sweepRemoteJobs({ site: o.site, dataDir: o.dataDir, records, keepMs, log, ...s }));
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const every = o.sweepEveryMs ?? 3_600_000;
  const schedule = (ms: number) => {
    timer = setTimeout(() => {
      sweeping = sweep().then(
        (r) => r.removed.length + r.blobsRemoved > 0 && log.info({ removed: r.removed.length, blobsRemoved: r.blobsRemoved, bytesFreed: r.bytesFreed }, 'retention sweep'),
        (err: unknown) => log.error({ err }, 'retention sweep failed; tried again at the next'),
      ).finally(() => !stopped && schedule(every));
    }, ms);
    timer.unref();
  };
  schedule(Math.min(60_000, every));
  return {
    peerJob: async (b) => {
      if (!peers.has(b.peer)) throw new FarmError('RB_BAD_PEER', `${b.peer} is not a peer whose jobs this site takes`);
      return handler(b);
    },
    refused: async (b, err) => {
      if (peers.has(b.peer)) await refused(b, err);
    },
    sweep,
    forward: forwarder({ site: o.site, dataDir: o.dataDir, records }),
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await sweeping;
      await returner.stop();
    },
  };
}
