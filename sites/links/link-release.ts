import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, LinkState, PROTOCOL_MAJOR, linkCodecs, subjects } from '../../protocol/index.ts';
import type { SiteLinksHandle } from './link-service.ts';

/**
 * Answers `rb.<site>.link.release` (LinkReleaseRequest → LinkReleaseReply) for the site's link
 * service: an operator lifts a peer's quarantine (`renderbus site release <peer>`; only operators
 * may publish it, protocol/roles.ts). A peer that is not quarantined is left as it is
 * (`released: false`); an unknown peer is RB_BAD_PEER. `nc` is the site-link's FARM connection.
 */
export async function serveLinkRelease(o: { site: string; nc: NatsConnection; links: Pick<SiteLinksHandle, 'status' | 'clearQuarantine'>; log: Logger }): Promise<Subscription> {
  const sub = o.nc.subscribe(subjects.linkRelease(o.site), {
    callback: (_e, m) => {
      let reply: Uint8Array;
      try {
        const req = linkCodecs.releaseRequest.decode(m.data);
        const link = o.links.status().find((l) => l.peer === req.peer);
        if (!link) throw new FarmError('RB_BAD_PEER', `site ${o.site} has no link to '${req.peer}'`);
        const released = link.state === LinkState.Quarantined;
        if (released) {
          o.links.clearQuarantine(req.peer);
          o.log.warn({ peer: req.peer, reason: link.reason }, 'quarantine released by an operator');
        }
        reply = linkCodecs.releaseReply.encode({ v: PROTOCOL_MAJOR, ok: true, body: { peer: req.peer, released, was: link.state } });
      } catch (err) {
        reply = linkCodecs.releaseReply.encode({ v: PROTOCOL_MAJOR, ok: false, error: FarmError.from(err, 'RB_SCHEMA_MISMATCH').toWire() });
      }
      m.respond(reply);
    },
  });
  await o.nc.flush();
  return sub;
}
