import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { LinkState, type Credentials } from '../protocol/index.ts';
import { connectBus } from '../actors/bus/index.ts';
import { holdReason, startIntake, type Intake } from './intake/index.ts';
import { setPeerKey, type StoredPeer } from './links/peer-store.ts';
import { DEFAULT_PEER_QUOTA_BYTES } from './links/peer.ts';
import { startSiteLinks, type SiteLinksHandle } from './links/link-service.ts';
import { serveLinkRelease } from './links/link-release.ts';
import { loadSiteKey } from './links/site-key.ts';
import { startOutsourcing, type Outsourcing, type OutsourcingOptions } from './outsource/index.ts';
import { serveQuoteAsker, serveQuotes } from './quotes/index.ts';
import { startRemoteJobs, type RemoteJobs } from './remote-jobs/index.ts';

/** What composing a linked site's services needs (`startSiteServices`). */
export interface SiteServicesInput {
  site: string;
  dataDir: string;
  /** The site's nats-server (FARM account). */
  url: string;
  log: Logger;
  /** The FARM credentials of the site's link service and of its intake (roles site-link, intake). */
  creds: { link: Credentials; intake: Credentials };
  /** The peers as stored, each with `dmzSeed`: the seed this site's link logs into that peer's DMZ with. */
  peers: readonly StoredPeer[];
  /** Period of the hot folders' backup scans (tests shorten it). */
  scanEveryMs?: number;
  /** The site's policy for outsourced jobs' results (`renderbus up --encrypt-results`; PackerOptions.encryptResults). */
  encryptResults?: OutsourcingOptions['encryptResults'];
  /** How long a peer's ended job's inputs are kept (`up --keep-inputs`; sites/remote-jobs/retention.ts). */
  keepInputsMs?: number;
  /** The scheduler's `--outsource-unrenderable` peers: a peer's job that consents to chaining and no host here can render is passed on to them. */
  outsourceUnrenderable?: readonly string[];
}

export interface SiteServices {
  /** The store changed (`renderbus site invite/join/remove`, a peer's key recorded): the new list. */
  peersChanged(peers: readonly StoredPeer[]): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A linked site's own services, composed here and nowhere else: the link service (one link per
 * peer over the peer's DMZ account: bundles in `outgoing/<peer>/` cross to the peer), the intake
 * (one watcher per `incoming/<peer>/`, each bundle routed to a half), the outsourcing half (our
 * jobs sent out: packer, results back), the remote-jobs half (peers' jobs rendered here), and
 * quotes (asked of the peers for a `site: auto` job, and given to them).
 * When the peers change, everything is started again with the new list: each part is idempotent
 * per bundle and resumes from its durable consumer, so a restart loses nothing.
 */
export async function startSiteServices(i: SiteServicesInput): Promise<SiteServices> {
  let running = await startOnce(i, i.peers);
  let chain = Promise.resolve();
  let lastNames = names(i.peers);
  return {
    peersChanged: (peers) => {
      const next = chain.then(async () => {
        // a key recorded (the link's first hello) changes the store but not who the peers are
        if (names(peers) === lastNames) {
          running.peers = peers;
          return;
        }
        lastNames = names(peers);
        await running.stop();
        running = await startOnce(i, peers);
      });
      chain = next.catch((err: unknown) => i.log.error({ err }, 'could not restart the site services for the new peers'));
      return next.then(() => {});
    },
    stop: async () => {
      await chain;
      await running.stop();
    },
  };
}

const STOP_GRACE_MS = 5_000;

const names = (peers: readonly StoredPeer[]) => peers.map((p) => p.name).sort().join(',');

interface Running {
  peers: readonly StoredPeer[];
  stop(): Promise<void>;
}

async function startOnce(i: SiteServicesInput, peers: readonly StoredPeer[]): Promise<Running> {
  const stops: (() => Promise<void>)[] = [];
  const named = new Map<() => Promise<void>, string>();
  const push = (name: string, f: () => Promise<void>) => {
    named.set(f, name);
    stops.push(f);
  };
  // a part talking to a peer's DMZ that is gone (the peer removed, its account reloaded away) may
  // never finish a drain: each part gets a bounded time, so a stop or a change of peers never hangs
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((res) => (timer = setTimeout(() => {
        i.log.warn({ part: named.get(s), afterMs: STOP_GRACE_MS }, 'a site service did not stop in time: left behind');
        res();
      }, STOP_GRACE_MS)));
      await Promise.race([s().catch((err: unknown) => i.log.warn({ err }, 'stop failed')), late]);
      clearTimeout(timer);
    }
  };
  const running: Running = { peers, stop };
  if (peers.length === 0) return running;
  try {
    const log = i.log;
    const names = peers.map((p) => p.name);
    const linkNc = await connectBus({ servers: i.url, name: `${i.site}-site-link`, creds: i.creds.link, log: log.child({ conn: 'site-link' }) });
    push('site-link connection', () => linkNc.drain());
    const dmz: { name: string; dmz: NatsConnection }[] = [];
    for (const p of peers) {
      // this site's own user in the peer's DMZ account: the link's streams live there
      const nc = await connect({
        servers: i.url, name: `${i.site}-dmz-${p.name}`, authenticator: nkeyAuthenticator(new TextEncoder().encode(p.dmzSeed)),
        maxReconnectAttempts: -1, reconnectTimeWait: 500, waitOnFirstConnect: true, pingInterval: 10_000, maxPingOut: 2,
      });
      // closed, not drained: after a peer is removed its account is gone and a drain would wait for ever
      push(`dmz connection ${p.name}`, () => nc.close());
      dmz.push({ name: p.name, dmz: nc });
    }
    const links: SiteLinksHandle = await startSiteLinks({
      site: i.site, dataDir: i.dataDir, farm: linkNc, peers: dmz, log,
      ...(i.scanEveryMs !== undefined ? { scanEveryMs: i.scanEveryMs } : {}),
      onPeerKey: (peer, key) => {
        setPeerKey(i.dataDir, peer, key).then(
          (r) => r === 'stored' && log.info({ peer }, 'recorded the peer\'s site key (first seen on its link)'),
          (err: unknown) => log.error({ err, peer }, 'the peer\'s site key was not recorded'),
        );
      },
    });
    push('site links', links.stop);
    const release = await serveLinkRelease({ site: i.site, nc: linkNc, links, log });
    push('link release', async () => release.unsubscribe());
    // quotes (a `site: auto` job): ours asked of the peers for the scheduler, theirs answered here
    const quotes = serveQuotes({ site: i.site, dataDir: i.dataDir, nc: linkNc, peers: names, log });
    push('quotes', async () => quotes.stop());
    const asker = serveQuoteAsker({ site: i.site, nc: linkNc, peers: () => running.peers.map((p) => p.name), log });
    push('quote asker', async () => asker.stop());
    const intakeNc = await connectBus({ servers: i.url, name: `${i.site}-intake`, creds: i.creds.intake, log: log.child({ conn: 'intake' }) });
    push('intake connection', () => intakeNc.drain());
    const peerOf = (name: string) => running.peers.find((p) => p.name === name);
    const remote: RemoteJobs = await startRemoteJobs({
      site: i.site, dataDir: i.dataDir, nc: intakeNc, peers: names, log,
      forwardTo: () => (i.outsourceUnrenderable ?? []).filter((p) => names.includes(p)),
      ...(i.keepInputsMs !== undefined ? { keepInputsMs: i.keepInputsMs } : {}),
    });
    push('remote jobs', remote.stop);
    // peers' jobs passed on (chaining) are packed from their tree, and their news lands in their folder here
    const outsourcing: Outsourcing = await startOutsourcing({
      site: i.site, dataDir: i.dataDir, nc: intakeNc, peers: names, log,
      forward: (job) => remote.forward.jobFor(job),
      outputDirFor: (job) => remote.forward.outputDirFor(job),
      keyOf: (site) => peerOf(site)?.publicKey,
      ...(i.encryptResults !== undefined ? { encryptResults: i.encryptResults } : {}),
    });
    push('outsourcing', outsourcing.stop);
    const ownKey = await loadSiteKey(i.dataDir);
    const intake: Intake = await startIntake({
      site: i.site, dataDir: i.dataDir, peers: names, log,
      handlers: { peerJob: remote.peerJob, ownJob: outsourcing.ownJob, refused: remote.refused },
      // the peer's key as stored now (the first hello records it): every bundle's signature is checked with it
      peerKey: (peer) => peerOf(peer)?.publicKey,
      allowUnsigned: (peer) => peerOf(peer)?.allowUnsigned === true,
      // what the peer may store here, as stored now ('renderbus site <peer> --quota')
      quotaBytes: (peer) => peerOf(peer)?.quotaBytes ?? DEFAULT_PEER_QUOTA_BYTES,
      knownKeys: () => [[i.site, ownKey.publicKey] as const, ...running.peers.flatMap((p) => (p.publicKey ? [[p.name, p.publicKey] as const] : []))],
      // a quarantined peer's bundles, or those of a peer whose key is not known yet, wait in incoming/
      held: (peer) => holdReason(peer, {
        quarantined: links.status().find((l) => l.peer === peer)?.state === LinkState.Quarantined,
        keyKnown: peerOf(peer)?.publicKey !== undefined,
        allowUnsigned: peerOf(peer)?.allowUnsigned === true,
      }),
      ...(i.scanEveryMs !== undefined ? { scanEveryMs: i.scanEveryMs } : {}),
    });
    push('intake', intake.stop);
    return running;
  } catch (err) {
    await stop();
    throw err;
  }
}
