import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';

/** Where one peer's link stands (docs/federation.md, "The site link"). */
export const LinkState = {
  /** The peer's hellos arrive. */
  Up: 'up',
  /** No hello for 3 periods: what must cross waits in the outbox. */
  Down: 'down',
  /** Up, but the inbox has not moved while the peer says it has sent more: the link is repairing its source. */
  Stalled: 'stalled',
  /** The peer sent what the pipe cannot carry (a poison message); intake of its bundles stops until an operator clears it. */
  Quarantined: 'quarantined',
} as const;
export type LinkState = (typeof LinkState)[keyof typeof LinkState];

const Count = Type.Integer({ minimum: 0 });

/** What waits to cross one way: bundles and their bytes not yet acknowledged by the other side. */
export const LinkBacklog = Type.Object({ bundles: Count, bytes: Count });
export type LinkBacklog = Static<typeof LinkBacklog>;

/** One peer's link as `renderbus sites` and `renderbus site <peer>` show it. */
export const LinkStatus = Type.Object({
  peer: Token,
  state: Type.Union(Object.values(LinkState).map((s) => Type.Literal(s))),
  /** When the link entered its state (ms since the epoch). */
  since: Millis,
  /** Round trip of the last hello answered (ms), when there is one. */
  rttMs: Type.Optional(Type.Number({ minimum: 0 })),
  lastHelloAt: Type.Optional(Millis),
  /** Bundles in outgoing/<peer>/ and in flight, not yet receipted by the peer. */
  outgoing: LinkBacklog,
  /** Bundles the peer is sending us, not yet complete. */
  incoming: LinkBacklog,
  /** The bundle being sent now, and how far. */
  sending: Type.Optional(Type.Object({ bundleId: Type.String(), bytesSent: Count, bytesTotal: Count })),
  /** Why the link is stalled or quarantined, for a person. */
  reason: Type.Optional(Type.String()),
  /** Bytes this link put on the pipe and took off it since the link service started. */
  bytesOut: Count,
  bytesIn: Count,
});
export type LinkStatus = Static<typeof LinkStatus>;

/** Anyone → the site's link service, request on `link.status`: every peer, or one. */
export const LinkStatusRequest = Type.Object({ v: V, peer: Type.Optional(Token) });
export type LinkStatusRequest = Static<typeof LinkStatusRequest>;

export const LinkStatusBody = Type.Object({ site: Token, links: Type.Array(LinkStatus) });
export type LinkStatusBody = Static<typeof LinkStatusBody>;
/** The link service's answer: `{ ok: true, body: { site, links } }` (one entry when `peer` was asked). */
export const LinkStatusReply = Reply(LinkStatusBody);
