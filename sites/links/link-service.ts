import { randomBytes } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, PROTOCOL_MAJOR, linkCodecs, subjects, type LinkStatus } from '../../protocol/index.ts';
import { PeerLink } from './link-runtime.ts';
import { loadSiteKey } from './site-key.ts';

export interface SiteLinksOptions {
  site: string;
  dataDir: string;
  /** FARM, as the site-link role: hellos, pings and `link.status`. */
  farm: NatsConnection;
  /** Per peer, this site's link user in the peer's DMZ account (`FED_<PEER>`). */
  peers: readonly { name: string; dmz: NatsConnection }[];
  log: Logger;
  /** A peer's site key seen for the first time, or changed (the caller stores it). */
  onPeerKey?(peer: string, publicKeyB64: string): void;
  /** Scan period of the outgoing folders (tests shorten it). */
  scanEveryMs?: number;
  /** How long an inbox may bring nothing while the peer says it sent more, before its link acts (tests shorten it). */
  stallAfterMs?: number;
}

export interface SiteLinksHandle {
  status(): LinkStatus[];
  /** Clears a peer's quarantine: its inbox is reset past the message it could not take. */
  clearQuarantine(peer: string): void;
  stop(): Promise<void>;
}

/**
 * The site-link service (docs/federation.md, "The site link"): one link per peer, each moving the
 * bundles dropped in `hotfolders/outgoing/<peer>/` to the peer's `incoming/<us>/`, and answering
 * `link.status` on FARM with every peer's state, backlog and round trip.
 */
export async function startSiteLinks(o: SiteLinksOptions): Promise<SiteLinksHandle> {
  const key = await loadSiteKey(o.dataDir);
  const instance = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const log = o.log.child({ actor: 'site-link', site: o.site });
  const links = new Map<string, PeerLink>();
  let sub: Subscription | undefined;
  const stop = async () => {
    sub?.unsubscribe();
    for (const l of links.values()) await l.stop();
  };
  try {
    for (const p of o.peers) {
      const l = new PeerLink({ site: o.site, peer: p.name, dataDir: o.dataDir, farm: o.farm, dmz: p.dmz, log, key, instance, ...(o.onPeerKey ? { onPeerKey: o.onPeerKey } : {}), ...(o.scanEveryMs ? { scanEveryMs: o.scanEveryMs } : {}), ...(o.stallAfterMs ? { stallAfterMs: o.stallAfterMs } : {}) });
      links.set(p.name, l);
      await l.start();
    }
    const status = () => [...links.values()].map((l) => l.status());
    sub = o.farm.subscribe(subjects.linkStatus(o.site), {
      callback: (_e, m) => {
        let reply: Uint8Array;
        try {
          const req = linkCodecs.statusRequest.decode(m.data);
          if (req.peer !== undefined && !links.has(req.peer)) throw new FarmError('RB_BAD_PEER', `site ${o.site} has no link to '${req.peer}'`);
          const all = status().filter((s) => req.peer === undefined || s.peer === req.peer);
          reply = linkCodecs.statusReply.encode({ v: PROTOCOL_MAJOR, ok: true, body: { site: o.site, links: all } });
        } catch (err) {
          reply = linkCodecs.statusReply.encode({ v: PROTOCOL_MAJOR, ok: false, error: FarmError.from(err, 'RB_SCHEMA_MISMATCH').toWire() });
        }
        m.respond(reply);
      },
    });
    await o.farm.flush();
    log.info({ peers: [...links.keys()], instance }, 'site links started');
    return {
      status,
      clearQuarantine: (peer) => {
        const l = links.get(peer);
        if (!l) throw new FarmError('RB_BAD_PEER', `site ${o.site} has no link to '${peer}'`);
        l.clearQuarantine();
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
