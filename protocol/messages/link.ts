import { Type, type Static } from '@sinclair/typebox';
import { codecFor } from '../codec.ts';
import { Millis, Reply, Token, V, WireErrorSchema } from './common.ts';

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

/**
 * An operator → the site's link service, request on `link.release`: lift the peer's quarantine
 * (`renderbus site release <peer>`). The inbox is reset past the message it could not take, and
 * the intake takes the peer's held bundles again.
 */
export const LinkReleaseRequest = Type.Object({ v: V, peer: Token });
export type LinkReleaseRequest = Static<typeof LinkReleaseRequest>;

/** Whether there was a quarantine to lift, and the link's state before. */
export const LinkReleaseBody = Type.Object({ peer: Token, released: Type.Boolean(), was: Type.Union(Object.values(LinkState).map((s) => Type.Literal(s))) });
export type LinkReleaseBody = Static<typeof LinkReleaseBody>;
export const LinkReleaseReply = Reply(LinkReleaseBody);

// ---- The link's wire (docs/federation.md, "The site link"). Each message travels from the
// sender's outbox to the receiver's inbox on `rbq.<from>.<to>.b.<key>.<kind>` (subjects.fedQueue);
// who sent it is proven by the DMZ account it arrived through, never by a field here.

const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });
/** The manifest's bundle id (protocol/bundles): not a subject token, so subjects carry its key. */
const BundleId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' });
/** A bundle file name, `<id>.rbb`, kept across the link. */
const BundleName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\\.rbb$' });

/** Core NATS, every 2 s, `rb.fed.<to>.<from>.link.hello` (lossy): the sender's link is alive. */
export const LinkHello = Type.Object({
  v: V,
  /** Changes on every start of the sender's link service: a peer restart is visible. */
  instance: Type.String({ minLength: 1, maxLength: 64 }),
  /** The last sequence in the sender's outbox to us: what it has put on the pipe. */
  outSeq: Count,
  /** The highest sequence of *our* outbox the sender has taken from its inbox: we may trim below it. */
  inSeq: Count,
  /** The sender server's max_payload (bytes); a peer with a larger one could poison our inbox. */
  maxPayload: Count,
  /** The sender's site public key (Ed25519, base64url SPKI, sites/links/site-key.ts). */
  publicKey: Type.String({ minLength: 1, maxLength: 256 }),
  at: Millis,
});
export type LinkHello = Static<typeof LinkHello>;

/** Sender → receiver: a bundle to carry. The receiver answers `want`. */
export const LinkManifest = Type.Object({
  v: V,
  bundleId: BundleId,
  name: BundleName,
  /** Which send of this bundle (a restarted sender sends the manifest again with a new one). */
  attempt: Type.String({ minLength: 1, maxLength: 64 }),
  /** The bundle's `manifest.msgpack`, byte for byte (its signature covers these bytes). */
  manifest: Type.Uint8Array({ maxByteLength: 1024 * 1024 }),
  signature: Type.Optional(Type.Uint8Array({ maxByteLength: 4096 })),
  /** The tar's 512-byte entry headers in order, deflated: the receiver rebuilds the tar byte for byte. */
  layout: Type.Uint8Array({ maxByteLength: 512 * 1024 }),
  /** Zero bytes after the last entry (the tar's end-of-archive blocks and record padding). */
  trailer: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 }),
  /** The tar's size in bytes. */
  size: Count,
});
export type LinkManifest = Static<typeof LinkManifest>;

/** Receiver → sender: the blobs its content store for the sender lacks (maybe none). */
export const LinkWant = Type.Object({ v: V, bundleId: BundleId, attempt: Type.String({ minLength: 1, maxLength: 64 }), want: Type.Array(Sha256Hex, { maxItems: 20_000 }) });
export type LinkWant = Static<typeof LinkWant>;

/** Sender → receiver: every wanted blob is on the pipe (they come before this in the pipe's order). */
export const LinkEnd = Type.Object({ v: V, bundleId: BundleId, attempt: Type.String({ minLength: 1, maxLength: 64 }), blobs: Count, bytes: Count });
export type LinkEnd = Static<typeof LinkEnd>;

/**
 * Receiver → sender: the bundle is in its incoming folder (`ok`), or these blobs are still
 * missing (the sender sends them again, then `end`), or it was refused (`error`: the sender moves
 * the tar to failed/ with the reason).
 */
export const LinkReceipt = Type.Object({
  v: V,
  bundleId: BundleId,
  /** The send this answers (its `end`'s attempt); absent when answering a replay of a finished bundle. */
  attempt: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  ok: Type.Boolean(),
  missing: Type.Array(Sha256Hex, { maxItems: 20_000 }),
  error: Type.Optional(WireErrorSchema),
});
export type LinkReceipt = Static<typeof LinkReceipt>;

/** Headers of a `blob` message (its data is the chunk): which blob, where in it, and its size. */
export const BlobHeader = { sha256: 'Rb-Sha256', offset: 'Rb-Off', size: 'Rb-Size' } as const;

/** `rb.fedsvc.<to>.<from>.ping`: a round trip; the answer carries the answering link's instance. */
export const LinkPing = Type.Object({ v: V, at: Millis });
export type LinkPing = Static<typeof LinkPing>;
export const LinkPingReply = Reply(Type.Object({ instance: Type.String(), at: Millis }));

/** The link's codecs (plain MessagePack, checked on the way in). */
export const linkCodecs = {
  hello: codecFor(LinkHello),
  manifest: codecFor(LinkManifest),
  want: codecFor(LinkWant),
  end: codecFor(LinkEnd),
  receipt: codecFor(LinkReceipt),
  ping: codecFor(LinkPing),
  pingReply: codecFor(LinkPingReply),
  statusRequest: codecFor(LinkStatusRequest),
  statusReply: codecFor(LinkStatusReply),
  releaseRequest: codecFor(LinkReleaseRequest),
  releaseReply: codecFor(LinkReleaseReply),
};
