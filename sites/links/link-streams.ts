import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { streams, subjects } from '../../protocol/index.ts';

/** The durable consumer that reads one peer's inbox. */
export const INBOX_CONSUMER = 'link';
/** Largest message either stream takes: a 256 KiB chunk with headers fits many times over; anything near max_payload does not. */
/**
 * How long a taken message may go unacknowledged before the inbox hands it out again: what a
 * restarted link waits for the messages its predecessor had taken and not finished. Every
 * message is idempotent, so a redelivery costs time, never correctness.
 */
const ACK_WAIT_NS = 10_000_000_000;
export const MAX_LINK_MESSAGE = 1024 * 1024;

/**
 * The two streams of one link, both in this site's DMZ account for the peer (docs/federation.md,
 * "The site link"):
 * - `RBFED_OUT`: what we send the peer, `rbq.<us>.<peer>.>`, in our own domain, so a publish is
 *   always local and work waits here while the link is down; `discard: new` (a full outbox refuses
 *   the sender, never drops what waits);
 * - `RBFED_IN`: a WorkQueue that sources the peer's outbox across domains (`$JS.<peer>.API`),
 *   read by one durable pull consumer; acked messages are gone.
 */
export async function ensureLinkStreams(jsm: JetStreamManager, site: string, peer: string): Promise<void> {
  await upsert(jsm, {
    name: streams.fedOutbox,
    subjects: [subjects.allFedQueue(site, peer)],
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_msg_size: MAX_LINK_MESSAGE,
    duplicate_window: 120_000_000_000, // 2 min (ns): a manifest republished by the same attempt lands once
  });
  const exists = await jsm.streams.info(streams.fedInbox).then(() => true, () => false);
  if (!exists) await jsm.streams.add(inboxConfig(peer));
  await jsm.consumers.add(streams.fedInbox, { durable_name: INBOX_CONSUMER, ack_policy: AckPolicy.Explicit, max_ack_pending: 256, ack_wait: ACK_WAIT_NS });
}

function inboxConfig(peer: string, startSeq?: number): Partial<StreamConfig> & { name: string } {
  return {
    name: streams.fedInbox,
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    max_msg_size: MAX_LINK_MESSAGE,
    sources: [{ name: streams.fedOutbox, external: { api: `$JS.${peer}.API`, deliver: '' }, ...(startSeq ? { opt_start_seq: startSeq } : {}) }],
  };
}

async function upsert(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  const exists = await jsm.streams.info(cfg.name).then(() => true, () => false);
  if (exists) await jsm.streams.update(cfg.name, cfg);
  else await jsm.streams.add(cfg);
}

/**
 * Deletes the inbox and creates it again sourcing the peer's outbox from `startSeq` (notes §3.2:
 * the only remedy that gets a source past a message it cannot take, or out of a silent stall).
 * The caller has drained it: what it held was taken, so starting after the last origin sequence
 * taken loses nothing.
 */
export async function recreateInbox(jsm: JetStreamManager, peer: string, startSeq: number): Promise<void> {
  await jsm.streams.delete(streams.fedInbox).catch(() => false);
  await jsm.streams.add(inboxConfig(peer, startSeq > 0 ? startSeq : undefined));
  await jsm.consumers.add(streams.fedInbox, { durable_name: INBOX_CONSUMER, ack_policy: AckPolicy.Explicit, max_ack_pending: 256, ack_wait: ACK_WAIT_NS });
}

/** The inbox as the watchdog sees it: its last sequence, and the source's error if it reports one. */
export async function inboxHealth(jsm: JetStreamManager): Promise<{ seq: number; error?: string }> {
  const info: StreamInfo = await jsm.streams.info(streams.fedInbox);
  const src = info.sources?.[0];
  const err = src?.error as { description?: string } | undefined;
  return { seq: info.state.last_seq, ...(err ? { error: err.description ?? JSON.stringify(err) } : {}) };
}

/** The outbox's last sequence (what the hello tells the peer). */
export async function outboxSeq(jsm: JetStreamManager): Promise<{ seq: number; messages: number; bytes: number }> {
  const info = await jsm.streams.info(streams.fedOutbox);
  return { seq: info.state.last_seq, messages: info.state.messages, bytes: info.state.bytes };
}

/**
 * The origin sequence of a sourced message: nats-server stamps `Nats-Stream-Source` with the
 * origin stream and its sequence. Undefined when the header is absent or not understood.
 */
export function originSeq(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const n = Number(header.trim().split(/\s+/)[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
