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
import { startReturner } from './returner.ts';

export { billOf, NO_RATES, type RateCard } from './bill.ts';
export { loadRateCard, rateCardOf, ratesPath } from './rate-card.ts';
export { localSpec, originalOutput, originalSample, remoteJobPaths, sampleFrames, treePath, type RemoteJobPaths } from './path-map.ts';
export { RemoteJobRecords, remoteJobsDir, type RemoteJobRecord } from './records.ts';
export { bundleIdFor } from './outbox.ts';
export { chainedBill, forwarder, keptBills, newsRoute, type ForwardedJob, type Forwarder, type KeptBill } from './forward.ts';
export { noHostReason } from './peer-job.ts';
export { RETURNER_CONSUMER, SAMPLE_BOX } from './returner.ts';

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
  /** The peers the site's policy sends jobs no host here can render to, linked now: a consenting peer's job is passed on (chaining). */
  forwardTo?(): readonly string[];
}

export interface RemoteJobs {
  /** The peerJob half of the intake (sites/intake IntakeHandlers.peerJob). */
  peerJob(b: ArrivedBundle): Promise<void>;
  /** Answers a job bundle the intake refused unread (IntakeHandlers.refused: the peer's quota). */
  refused(b: ArrivedBundle, err: FarmError): Promise<void>;
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
  let key: Promise<SiteKey> | undefined;
  const siteKey = () => (key ??= loadSiteKey(o.dataDir));
  const outbox = { site: o.site, dataDir: o.dataDir, records, key: siteKey };
  const returner = await startReturner({ ...outbox, nc: o.nc, log, rates: o.rates ?? ((peer) => loadRateCard(o.dataDir, peer)), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
  const peers = new Set(o.peers);
  const jobOptions = { ...outbox, nc: o.nc, log, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}), ...(o.forwardTo ? { forwardTo: o.forwardTo } : {}) };
  const handler = peerJobHandler(jobOptions);
  const refused = refusedHandler(jobOptions);
  return {
    peerJob: async (b) => {
      if (!peers.has(b.peer)) throw new FarmError('RB_BAD_PEER', `${b.peer} is not a peer whose jobs this site takes`);
      return handler(b);
    },
    refused: async (b, err) => {
      if (peers.has(b.peer)) await refused(b, err);
    },
    forward: forwarder({ site: o.site, dataDir: o.dataDir, records }),
    stop: () => returner.stop(),
  };
}
