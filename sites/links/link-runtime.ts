import { createHash, randomBytes, type Hash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, type Actor } from 'xstate';
import {
  BlobHeader, FarmError, LinkState, PROTOCOL_MAJOR, decodeManifest, linkCodecs, manifestBlobs, streams, subjects,
  type LinkManifest, type LinkReceipt, type LinkStatus, type LinkWant,
} from '../../protocol/index.ts';
import { DEFAULT_BUNDLE_LIMITS } from '../bundles/index.ts';
import { PeerCas } from '../cas/index.ts';
import { bundleFileName, ensureHotFolders, HotFolderWatcher, type HotFile, type HotFolderDirs } from '../hotfolders/index.ts';
import type { SiteKey } from './site-key.ts';
import { prepareOutgoing, type OutgoingBundle } from './bundle-send.ts';
import { signOutgoing } from './bundle-sign.ts';
import { linkMachine, reportedState } from './link-machine.ts';
import { ensureLinkStreams, INBOX_CONSUMER, inboxHealth, originSeq, outboxSeq, recreateInbox } from './link-streams.ts';
import { checkLayout, layoutSize, type TarEntry } from './tar-layout.ts';
import { TarUnderWay } from './tar-under-way.ts';
import { acceptChunk, bundleKey, CHUNK, MAX_RESENDS, planChunks, WINDOW, type BlobAssembly } from './transfer-plan.ts';

export interface PeerLinkOptions {
  site: string;
  peer: string;
  dataDir: string;
  /** FARM, as the site-link role: hellos and pings. */
  farm: NatsConnection;
  /** This site's link user in the peer's DMZ account: the streams. */
  dmz: NatsConnection;
  log: Logger;
  key: SiteKey;
  /** This run of the link service (hellos carry it; a restart changes it). */
  instance: string;
  onPeerKey?(peer: string, publicKey: string): void;
  /** Scan period of outgoing/<peer>/ (the watcher's default otherwise). */
  scanEveryMs?: number;
  /** How long the inbox may bring nothing while the peer says it sent more, before the link acts (default STALL_AFTER_MS; tests shorten it). */
  stallAfterMs?: number;
}

/** A bundle we are sending, from its manifest to its receipt. */
interface Sending {
  key: string;
  bundle: OutgoingBundle;
  attempt: string;
  resends: number;
  bytesSent: number;
  bytesTotal: number;
  done(err?: FarmError): void;
}

/** A bundle the peer is sending us. */
interface Receiving {
  key: string;
  msg: LinkManifest;
  blobs: Map<string, number>;
  entries: TarEntry[];
  /** Blobs whose chunks are arriving: their file for the store, the writes into it and the tar, their hash while they come in order. */
  asm: Map<string, BlobAssembly & { fh: FileHandle; path: string; writes: Promise<void>[]; failed?: unknown; hash: Hash | undefined; next: number }>;
  /** The tar being written as the blobs arrive (opened with the first blob or at the end). */
  tar: Promise<TarUnderWay> | undefined;
  /** Whole blobs being verified into the store. */
  landing: Set<Promise<void>>;
  landingBlobs: Set<string>;
  bytesIn: number;
}

const RECEIVER_LIMIT_BLOBS = 20_000;
/** Suffix of a blob being assembled in the store's temp folder. */
const ASM = '.asm';
/** Chunk writes into the tar under way not yet finished, at most (each holds its message's bytes). */
const WRITES_IN_FLIGHT = 32;

/**
 * One peer's link, bound to NATS, the peer's content store and its hot folders (docs/federation.md,
 * "The site link"). The machine (link-machine.ts) keeps the link's state; this class does the I/O:
 * hellos and pings on FARM, the outbox and inbox in the DMZ, the bundle protocol, and the watcher
 * on outgoing/<peer>/.
 */
export class PeerLink {
  private readonly o: PeerLinkOptions;
  private readonly log: Logger;
  private dirs!: HotFolderDirs;
  private cas!: PeerCas;
  private jsm!: JetStreamManager;
  private js!: JetStreamClient;
  private actor!: Actor<typeof linkMachine>;
  private watcher!: HotFolderWatcher;
  private readonly subs: Subscription[] = [];
  private messages: ConsumerMessages | undefined;
  private consuming: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly sending = new Map<string, Sending>();
  private readonly receiving = new Map<string, Receiving>();
  private attempts = 0;
  private readonly writing: Promise<void>[] = [];
  private lastOriginSeq = 0;
  private outSeq = 0;
  private rttMs: number | undefined;
  private bytesOut = 0;
  private bytesIn = 0;
  private pinging = false;
  private warnedPayload = false;
  private stateDir!: string;
  /** Serialises inbox resets with the consumer (a reset replaces the stream it reads). */
  private resetting: Promise<void> | undefined;

  constructor(o: PeerLinkOptions) {
    this.o = o;
    this.log = o.log.child({ peer: o.peer });
  }

  async start(): Promise<void> {
    const { site, peer, dataDir } = this.o;
    this.dirs = await ensureHotFolders(dataDir, peer);
    this.cas = await PeerCas.open(dataDir, peer);
    // blobs half assembled by an earlier run: their chunks are asked for again at `end`
    for (const n of await readdir(this.cas.tempDir)) if (n.endsWith(ASM)) await rm(join(this.cas.tempDir, n), { force: true });
    this.stateDir = join(dataDir, 'fed', 'links', peer, 'in');
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    // a tar under way whose bundle is no longer being received (done, or refused) is a leftover
    const state = await readdir(this.stateDir);
    for (const n of state) if (n.endsWith('.tar') && !state.includes(n.replace(/\.tar$/, '.manifest'))) await rm(join(this.stateDir, n), { force: true });
    this.jsm = await jetstreamManager(this.o.dmz);
    this.js = jetstream(this.o.dmz);
    await ensureLinkStreams(this.jsm, site, peer);
    this.outSeq = (await outboxSeq(this.jsm)).seq;

    this.actor = createActor(
      linkMachine.provide({
        actions: {
          sendHello: () => void this.sendHello(),
          peerKey: (_, key) => {
            this.log.info({ publicKey: key }, 'peer key seen');
            this.o.onPeerKey?.(peer, key);
          },
          recreateSource: () => void this.resetInbox('stalled'),
          resetInbox: () => void this.resetInbox('quarantine cleared'),
          stateChanged: () => {}, // logged from the snapshots below, which show the state after the change
        },
      }),
      { input: { peer, now: Date.now(), ...(this.o.stallAfterMs ? { stallAfterMs: this.o.stallAfterMs } : {}) } },
    );
    let last: LinkState | undefined;
    this.actor.subscribe({
      next: (snap) => {
        const state = reportedState(snap);
        if (state !== last) this.log.info({ state, reason: snap.context.reason }, 'link state');
        last = state;
      },
      error: (err) => this.log.error({ err }, 'link machine failed'),
    });

    // hellos from the peer arrive only through its DMZ: the subject's sender token is the proof
    this.subs.push(this.o.farm.subscribe(subjects.fed(site, peer, 'link.hello'), { callback: (_e, m) => this.onHello(m.data) }));
    this.subs.push(
      this.o.farm.subscribe(subjects.fedSvc(site, peer, 'ping'), {
        // a ping that is not one is refused by name, never answered as if it were (the federation fuzz found it)
        callback: (_e, m) => {
          let reply: Uint8Array;
          try {
            linkCodecs.ping.decode(m.data);
            reply = linkCodecs.pingReply.encode({ v: PROTOCOL_MAJOR, ok: true, body: { instance: this.o.instance, at: Date.now() } });
          } catch (err) {
            reply = linkCodecs.pingReply.encode({ v: PROTOCOL_MAJOR, ok: false, error: FarmError.from(err, 'RB_SCHEMA_MISMATCH').toWire() });
          }
          m.respond(reply);
        },
      }),
    );
    await this.o.farm.flush();
    this.actor.start();
    await this.startConsumer();

    this.watcher = new HotFolderWatcher({
      dir: this.dirs.outgoing,
      processedDir: this.dirs.processed,
      failedDir: this.dirs.failed,
      handle: (f) => this.send(f),
      log: this.log,
      ...(this.o.scanEveryMs ? { scanEveryMs: this.o.scanEveryMs } : {}),
    });
    await this.watcher.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.sending.values()) s.done(new FarmError('RB_DRAINING', 'the link service is stopping', { retryable: true }));
    await this.watcher?.stop();
    this.actor?.stop();
    for (const s of this.subs) s.unsubscribe();
    this.messages?.stop();
    await this.consuming;
    for (const r of this.receiving.values()) {
      await Promise.all(r.landing);
      for (const a of r.asm.values()) {
        await Promise.all(a.writes);
        await a.fh.close().catch(() => {});
      }
      await r.tar?.then((t) => t.close(), () => {});
    }
  }

  /** Clears a quarantine (an operator's decision): the inbox is reset past the message it could not take. */
  clearQuarantine(): void {
    this.actor.send({ type: 'quarantine.clear', at: Date.now() });
  }

  status(): LinkStatus {
    const snap = this.actor.getSnapshot();
    const c = snap.context;
    const out = [...this.sending.values()];
    const current = out.find((s) => s.bytesSent > 0) ?? out[0];
    const inc = [...this.receiving.values()];
    return {
      peer: this.o.peer,
      state: reportedState(snap),
      since: c.since,
      ...(this.rttMs !== undefined ? { rttMs: this.rttMs } : {}),
      ...(c.lastHelloAt !== undefined ? { lastHelloAt: c.lastHelloAt } : {}),
      outgoing: { bundles: out.length, bytes: out.reduce((n, s) => n + Math.max(0, s.bytesTotal - s.bytesSent), 0) },
      incoming: { bundles: inc.length, bytes: inc.reduce((n, r) => n + Math.max(0, r.msg.size - r.bytesIn), 0) },
      ...(current ? { sending: { bundleId: current.bundle.manifest.bundleId, bytesSent: current.bytesSent, bytesTotal: current.bytesTotal } } : {}),
      ...(c.reason ? { reason: c.reason } : {}),
      bytesOut: this.bytesOut,
      bytesIn: this.bytesIn,
    };
  }

  // ---- liveness

  private async sendHello(): Promise<void> {
    if (this.stopped) return;
    const { site, peer } = this.o;
    try {
      const out = await outboxSeq(this.jsm);
      this.outSeq = out.seq;
      const inbox = await inboxHealth(this.jsm);
      this.actor.send({ type: 'inbox.taken', seq: this.lastOriginSeq, at: Date.now() });
      if (inbox.error && /payload|size|exceed/i.test(inbox.error)) this.actor.send({ type: 'source.error', reason: `the inbox cannot take a message from ${peer}: ${inbox.error}`, at: Date.now() });
    } catch (err) {
      this.log.debug({ err }, 'stream info failed');
    }
    const hello = linkCodecs.hello.encode({
      v: PROTOCOL_MAJOR,
      instance: this.o.instance,
      outSeq: this.outSeq,
      inSeq: this.lastOriginSeq,
      maxPayload: this.o.farm.info?.max_payload ?? 0,
      publicKey: this.o.key.publicKey,
      at: Date.now(),
    });
    this.o.farm.publish(subjects.fed(peer, site, 'link.hello'), hello);
    void this.ping();
  }

  private async ping(): Promise<void> {
    if (this.pinging || this.stopped || reportedState(this.actor.getSnapshot()) === LinkState.Down) return;
    this.pinging = true;
    const t0 = performance.now();
    try {
      const r = linkCodecs.pingReply.decode((await this.o.farm.request(subjects.fedSvc(this.o.peer, this.o.site, 'ping'), linkCodecs.ping.encode({ v: PROTOCOL_MAJOR, at: Date.now() }), { timeout: 2_000 })).data);
      if (r.ok) this.rttMs = Math.round((performance.now() - t0) * 10) / 10;
    } catch {
      // no answer: the hellos decide whether the link is down
    } finally {
      this.pinging = false;
    }
  }

  private onHello(data: Uint8Array): void {
    let h;
    try {
      h = linkCodecs.hello.decode(data);
    } catch (err) {
      this.log.warn({ err }, 'hello refused');
      return;
    }
    this.actor.send({ type: 'hello', hello: { instance: h.instance, outSeq: h.outSeq, publicKey: h.publicKey }, at: Date.now() });
    const ours = this.o.farm.info?.max_payload ?? 0;
    if (ours > 0 && h.maxPayload > ours && !this.warnedPayload) {
      // it can store messages our inbox cannot take: one would wedge the inbox (the watchdog quarantines it)
      this.warnedPayload = true;
      this.log.warn({ theirs: h.maxPayload, ours }, 'the peer\'s server takes larger messages than ours');
    }
    // what the peer has taken from its inbox no longer needs to wait in our outbox
    if (h.inSeq > 0 && h.inSeq <= this.outSeq) void this.jsm.streams.purge(streams.fedOutbox, { seq: h.inSeq + 1 }).catch((err: unknown) => this.log.debug({ err }, 'outbox trim failed'));
  }

  // ---- the inbox

  private async startConsumer(): Promise<void> {
    const consumer = await this.js.consumers.get(streams.fedInbox, INBOX_CONSUMER);
    this.messages = await consumer.consume({ max_messages: 128 });
    const messages = this.messages;
    this.consuming = (async () => {
      for await (const m of messages) {
        // stopping: what is taken and not handled is handed out again (after the ack wait) to the next start
        if (this.stopped) break;
        try {
          await this.onMessage(m);
        } catch (err) {
          this.log.warn({ err, subject: m.subject }, 'link message refused');
        }
        const seq = originSeq(m.headers?.get('Nats-Stream-Source'));
        if (seq !== undefined && seq > this.lastOriginSeq) this.lastOriginSeq = seq;
        m.ack();
      }
    })().catch((err: unknown) => this.log.error({ err }, 'inbox consumer ended'));
  }

  /**
   * Deletes the inbox and creates it again past what was taken (notes §3.2), once it is drained:
   * everything it stored is handled first, so deleting it loses nothing. After a stall the source
   * starts at the next sequence; after a poison message one further, past the message it cannot
   * take (that message is lost on purpose: a blob of it is asked for again by the receipt).
   */
  private async resetInbox(why: 'stalled' | 'quarantine cleared'): Promise<void> {
    if (this.resetting || this.stopped) return;
    this.resetting = (async () => {
      try {
        let drained = false;
        for (const until = Date.now() + 60_000; !drained && Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
          const c = await this.jsm.consumers.info(streams.fedInbox, INBOX_CONSUMER);
          drained = c.num_pending === 0 && c.num_ack_pending === 0;
        }
        if (!drained) {
          // deleting it now would lose what it holds; a stalled link tries again next period
          this.log.warn({ why }, 'the inbox does not drain: not recreated');
          return;
        }
        const startSeq = this.lastOriginSeq + (why === 'stalled' ? 1 : 2);
        this.log.warn({ why, startSeq }, 'recreating the inbox');
        this.messages?.stop();
        await this.consuming;
        await recreateInbox(this.jsm, this.o.peer, startSeq);
        await this.startConsumer();
      } catch (err) {
        this.log.error({ err }, 'inbox reset failed');
      } finally {
        this.resetting = undefined;
      }
    })();
    await this.resetting;
  }

  private async onMessage(m: JsMsg): Promise<void> {
    const { site, peer } = this.o;
    // rbq.<peer>.<us>.b.<key>.<kind>: anything else has no business in this inbox
    const t = m.subject.split('.');
    if (t.length !== 6 || t[0] !== 'rbq' || t[1] !== peer || t[2] !== site || t[3] !== 'b') throw new FarmError('RB_BAD_SUBJECT_TOKEN', `unexpected subject ${m.subject}`);
    const key = t[4]!;
    this.bytesIn += m.data.length;
    switch (t[5]) {
      case 'manifest': return this.onManifest(key, m.data);
      case 'blob': return this.onBlob(key, m);
      case 'end': return this.onEnd(key, m.data);
      case 'want': return this.onWant(key, m.data);
      case 'receipt': return this.onReceipt(key, m.data);
      default: throw new FarmError('RB_BAD_SUBJECT_TOKEN', `unexpected message kind in ${m.subject}`);
    }
  }

  private async publish(key: string, kind: string, data: Uint8Array, msgID?: string): Promise<void> {
    await this.js.publish(subjects.fedQueue(this.o.site, this.o.peer, key, kind), data, msgID ? { msgID } : undefined);
    this.bytesOut += data.length;
  }

  // ---- receiving

  private receipt(r: Omit<LinkReceipt, 'v'>): Uint8Array {
    return linkCodecs.receipt.encode({ v: PROTOCOL_MAJOR, ...r });
  }

  private async onManifest(key: string, data: Uint8Array): Promise<void> {
    const msg = linkCodecs.manifest.decode(data);
    if (bundleKey(msg.bundleId) !== key) throw new FarmError('RB_BAD_BUNDLE', `manifest for ${msg.bundleId} came under key ${key}`);
    const done = await this.doneReceipt(key);
    if (done) {
      // a replay (a restarted sender, a duplicate): the bundle is already here; say so again
      await this.publish(key, 'receipt', done);
      return;
    }
    let r: Receiving;
    try {
      r = this.checkManifest(key, msg);
    } catch (err) {
      const e = FarmError.from(err, 'RB_BAD_BUNDLE');
      this.log.warn({ err: e, bundleId: msg.bundleId }, 'bundle refused');
      await this.publish(key, 'receipt', this.receipt({ bundleId: msg.bundleId, ok: false, missing: [], error: e.toWire() }));
      return;
    }
    const old = this.receiving.get(key);
    if (old) {
      r.asm = old.asm; // blobs under way keep their chunks
      r.landing = old.landing;
      r.landingBlobs = old.landingBlobs;
      r.tar = old.tar;
    }
    this.receiving.set(key, r);
    this.updateWork();
    await writeAtomic(join(this.stateDir, `${key}.manifest`), data);
    const want = await this.cas.has([...r.blobs.keys()]);
    this.log.info({ bundleId: msg.bundleId, blobs: r.blobs.size, want: want.length }, 'bundle offered');
    await this.publish(key, 'want', linkCodecs.want.encode({ v: PROTOCOL_MAJOR, bundleId: msg.bundleId, attempt: msg.attempt, want }));
  }

  /** Everything checked before anything is written: who, the name, the limits, the layout. */
  private checkManifest(key: string, msg: LinkManifest): Receiving {
    const m = decodeManifest(msg.manifest);
    if (m.bundleId !== msg.bundleId) throw new FarmError('RB_BAD_BUNDLE', `the manifest's bundle id ${m.bundleId} is not ${msg.bundleId}`);
    if (m.from !== this.o.peer || m.to !== this.o.site) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId} says it is from '${m.from}' to '${m.to}'; it came from '${this.o.peer}' to '${this.o.site}'`);
    bundleFileName(msg.name);
    const blobs = manifestBlobs(m);
    if (blobs.size > RECEIVER_LIMIT_BLOBS) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId} names ${blobs.size} blobs, at most ${RECEIVER_LIMIT_BLOBS}`);
    const total = [...blobs.values()].reduce((a, b) => a + b, 0);
    if (total > DEFAULT_BUNDLE_LIMITS.totalBytes) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId} holds ${total} bytes, at most ${DEFAULT_BUNDLE_LIMITS.totalBytes}`);
    let headers: Buffer;
    try {
      headers = inflateRawSync(msg.layout, { maxOutputLength: (blobs.size + 2) * 512 });
    } catch (cause) {
      throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: its tar layout does not inflate to at most ${blobs.size + 2} headers`, { cause });
    }
    const entries = checkLayout(headers, { manifestSize: msg.manifest.length, ...(msg.signature ? { signatureSize: msg.signature.length } : {}), blobs });
    if (layoutSize(entries, msg.trailer) !== msg.size) throw new FarmError('RB_BAD_BUNDLE', `bundle ${m.bundleId}: its layout adds up to ${layoutSize(entries, msg.trailer)} bytes, not ${msg.size}`);
    return { key, msg, blobs, entries, asm: new Map(), tar: undefined, landing: new Set(), landingBlobs: new Set(), bytesIn: 0 };
  }

  private async receivingOf(key: string): Promise<Receiving | undefined> {
    const r = this.receiving.get(key);
    if (r) return r;
    // after a restart: the manifest was taken before, its state is on disk
    const data = await readFile(join(this.stateDir, `${key}.manifest`)).catch(() => undefined);
    if (!data) return undefined;
    const back = this.checkManifest(key, linkCodecs.manifest.decode(data));
    this.receiving.set(key, back);
    return back;
  }

  private async onBlob(key: string, m: JsMsg): Promise<void> {
    const r = await this.receivingOf(key);
    if (!r) throw new FarmError('RB_BAD_BLOB', `a blob for bundle key ${key}, which was never offered (or is done)`);
    const sha256 = m.headers?.get(BlobHeader.sha256) ?? '';
    const offset = Number(m.headers?.get(BlobHeader.offset));
    const size = r.blobs.get(sha256);
    if (size === undefined) throw new FarmError('RB_BAD_BLOB', `bundle ${r.msg.bundleId} holds no blob '${sha256.slice(0, 80)}'`);
    r.bytesIn += m.data.length;
    let a = r.asm.get(sha256);
    if (!a) {
      // already stored, or being verified into the store: a resend crossing a late chunk
      if (r.landingBlobs.has(sha256) || (await this.cas.has([sha256])).length === 0) return;
      const path = join(this.cas.tempDir, `${sha256}.${randomBytes(6).toString('hex')}${ASM}`);
      a = { sha256, size, got: new Set(), fh: await open(path, 'w', 0o600), path, writes: [], hash: createHash('sha256'), next: 0 };
      r.asm.set(sha256, a);
    }
    const v = acceptChunk(a, offset, m.data.length);
    if (!v.ok) throw v.error;
    if (!v.duplicate && m.data.length > 0) {
      // chunks come in order (one sender, one stream): hashed as they come, the blob is not read
      // again to be verified; one out of order (a resend) leaves that to the store
      if (a.hash && offset === a.next) {
        a.hash.update(m.data);
        a.next += m.data.length;
      } else {
        a.hash = undefined;
      }
      // written into the blob's file and at its place in the tar, not awaited: the inbox goes on
      // (a crash loses the blob's chunks, which were never more than a blob under way: the
      // receipt asks for it again)
      const blob = a;
      const tar = await this.tarOf(r);
      const w = Promise.all([a.fh.write(m.data, 0, m.data.length, offset), tar.write(sha256, offset, m.data)]).then(() => {}, (err: unknown) => { blob.failed ??= err; });
      a.writes.push(w);
      this.writing.push(w);
      if (this.writing.length > WRITES_IN_FLIGHT) await this.writing.shift();
    }
    if (!v.complete) return;
    r.asm.delete(sha256);
    const digest = a.hash && a.next === size ? a.hash.digest('hex') : undefined;
    // fsyncing a large blob (and hashing one that came out of order) takes a while on a busy
    // disk: the inbox keeps being read meanwhile, and `end` waits for every blob still landing (a
    // crash before it lands only makes it missing, and the receipt asks for it again)
    const done = a;
    const landing = (async () => {
      await Promise.all(done.writes);
      await done.fh.close();
      if (done.failed) {
        await rm(done.path, { force: true });
        throw done.failed;
      }
      const { stored } = await this.cas.adopt(done.path, sha256, size, { deferDirSync: true, ...(digest ? { digest } : {}) });
      // the tar got the same bytes as the file the store just verified (one already stored was not checked: copied at the end)
      if (stored) (await this.tarOf(r)).markWhole(sha256);
    })().catch((err: unknown) => {
      // a hash or size mismatch: refused and removed; the receipt asks for it again
      this.log.warn({ err, bundleId: r.msg.bundleId, sha256 }, 'blob refused');
    });
    r.landing.add(landing);
    r.landingBlobs.add(sha256);
    void landing.finally(() => {
      r.landing.delete(landing);
      r.landingBlobs.delete(sha256);
    });
  }

  private async onEnd(key: string, data: Uint8Array): Promise<void> {
    const end = linkCodecs.end.decode(data);
    const done = await this.doneReceipt(key);
    if (done) return void (await this.publish(key, 'receipt', done));
    const r = await this.receivingOf(key);
    if (!r) throw new FarmError('RB_BAD_BUNDLE', `end of bundle ${end.bundleId}, which was never offered`);
    await Promise.all(r.landing);
    await this.cas.flush();
    const missing = await this.cas.has([...r.blobs.keys()]);
    if (missing.length > 0) {
      this.log.warn({ bundleId: r.msg.bundleId, missing: missing.length }, 'bundle incomplete at its end: asking again');
      await this.publish(key, 'receipt', this.receipt({ bundleId: r.msg.bundleId, attempt: end.attempt, ok: false, missing }));
      return;
    }
    let receipt: Uint8Array;
    try {
      this.log.info({ bundleId: r.msg.bundleId }, 'bundle complete: writing it');
      await this.materialize(r);
      await this.cas.addRef(r.msg.bundleId, [...r.blobs.keys()]);
      receipt = this.receipt({ bundleId: r.msg.bundleId, ok: true, missing: [] });
      this.log.info({ bundleId: r.msg.bundleId, name: r.msg.name }, 'bundle received');
    } catch (err) {
      const e = FarmError.from(err, 'RB_OUTPUT_FAILED');
      if (e.retryable) throw e; // our disk: the message is taken again later
      this.log.warn({ err: e, bundleId: r.msg.bundleId }, 'bundle could not be placed');
      receipt = this.receipt({ bundleId: r.msg.bundleId, ok: false, missing: [], error: e.toWire() });
    }
    await r.tar?.then((t) => t.discard(), () => {}); // placed (its name removed already) or refused
    await writeAtomic(join(this.stateDir, `${key}.done`), receipt);
    await rm(join(this.stateDir, `${key}.manifest`), { force: true });
    this.receiving.delete(key);
    this.updateWork();
    await this.publish(key, 'receipt', receipt);
  }

  /** Writes incoming/<peer>/<name>: the tar under way completed from the store, then linked in; once, never over another. */
  private async materialize(r: Receiving): Promise<void> {
    const final = join(this.dirs.incoming, r.msg.name);
    const there = await stat(final).catch(() => undefined);
    // a restart between the drop and the done mark: the bundle is already in place
    if (there && there.size === r.msg.size) return;
    await (await this.tarOf(r)).finish(this.cas, this.dirs.incoming, r.msg.name);
  }

  /** The tar under way of a bundle being received (`<data>/fed/links/<peer>/in/<key>.tar`), opened once. */
  private tarOf(r: Receiving): Promise<TarUnderWay> {
    if (!r.tar) {
      const opening = TarUnderWay.open(join(this.stateDir, `${r.key}.tar`), { entries: r.entries, manifestBytes: r.msg.manifest, ...(r.msg.signature ? { signature: r.msg.signature } : {}), size: r.msg.size });
      r.tar = opening;
      opening.catch(() => { if (r.tar === opening) r.tar = undefined; }); // the next caller tries again
    }
    return r.tar;
  }

  private async doneReceipt(key: string): Promise<Uint8Array | undefined> {
    return readFile(join(this.stateDir, `${key}.done`)).catch(() => undefined);
  }

  // ---- sending

  private async send(f: HotFile): Promise<void> {
    if (this.stopped) throw new FarmError('RB_DRAINING', 'the link service is stopping', { retryable: true });
    await signOutgoing({ path: f.path, site: this.o.site, key: this.o.key }); // every bundle leaves signed, a hand-dropped one too
    const bundle = await prepareOutgoing({ path: f.path, name: f.name, site: this.o.site, peer: this.o.peer, dataDir: this.o.dataDir });
    const key = bundleKey(bundle.manifest.bundleId);
    const attempt = `${this.o.instance}-${++this.attempts}`;
    const finished = new Promise<void>((resolve, reject) => {
      this.sending.set(key, {
        key,
        bundle,
        attempt,
        resends: 0,
        bytesSent: 0,
        bytesTotal: 0,
        done: (err) => {
          this.sending.delete(key);
          this.updateWork();
          if (err) reject(err);
          else resolve();
        },
      });
    });
    this.updateWork();
    const msg: LinkManifest = {
      v: PROTOCOL_MAJOR,
      bundleId: bundle.manifest.bundleId,
      name: f.name,
      attempt,
      manifest: bundle.manifestBytes,
      ...(bundle.signature ? { signature: bundle.signature } : {}),
      layout: bundle.layout,
      trailer: bundle.trailer,
      size: bundle.size,
    };
    await this.publish(key, 'manifest', linkCodecs.manifest.encode(msg), `${key}.manifest.${attempt}`);
    this.log.info({ bundleId: bundle.manifest.bundleId, name: f.name, bytes: bundle.size }, 'bundle offered to peer');
    await finished;
  }

  private updateWork(): void {
    this.actor.send({ type: 'work', active: this.sending.size + this.receiving.size });
  }

  private onWant(key: string, data: Uint8Array): void {
    const want: LinkWant = linkCodecs.want.decode(data);
    const s = this.sending.get(key);
    if (!s || s.attempt !== want.attempt) {
      this.log.debug({ bundleId: want.bundleId }, 'want for a bundle not being sent (an earlier attempt)');
      return;
    }
    // blobs go out in the background: the inbox keeps being read meanwhile
    void this.sendBlobs(s, want.want).catch((err: unknown) => s.done(FarmError.from(err, 'RB_OUTPUT_FAILED')));
  }

  private async sendBlobs(s: Sending, want: readonly string[]): Promise<void> {
    const plan = planChunks(s.bundle.blobs, want);
    if (plan.refused.length > 0) this.log.warn({ bundleId: s.bundle.manifest.bundleId, refused: plan.refused.length }, 'peer wants blobs the bundle does not hold: refused');
    s.bytesTotal += plan.bytes;
    const window: Promise<unknown>[] = [];
    // WINDOW + 1 buffers in turn: one is used again only once its publish was acknowledged (the
    // window awaits all but the last WINDOW - 1), so 256 MB sent allocate 8 MB, not 256 MB to collect
    const buffers: Buffer[] = [];
    let sent = 0;
    let blobs = 0;
    const fh = await open(s.bundle.path, 'r');
    try {
      for (const sha256 of new Set(plan.chunks.map((c) => c.sha256))) {
        blobs++;
        const size = s.bundle.blobs.get(sha256)!;
        const start = s.bundle.offsets.get(sha256)!;
        const hash = createHash('sha256');
        for (let offset = 0; offset === 0 || offset < size; offset += CHUNK) {
          if (!this.sending.has(s.key)) return; // stopped or finished meanwhile
          const len = Math.min(CHUNK, size - offset);
          const slot = sent++ % (WINDOW + 1);
          const buf = (buffers[slot] ??= Buffer.allocUnsafe(CHUNK)).subarray(0, len);
          if (len > 0 && (await fh.read(buf, 0, len, start + offset)).bytesRead !== len) throw new FarmError('RB_BAD_BUNDLE', `${s.bundle.name} ends inside blob ${sha256}`);
          hash.update(buf);
          const h = natsHeaders();
          h.set(BlobHeader.sha256, sha256);
          h.set(BlobHeader.offset, String(offset));
          h.set(BlobHeader.size, String(size));
          window.push(this.js.publish(subjects.fedQueue(this.o.site, this.o.peer, s.key, 'blob'), buf, { headers: h }));
          this.bytesOut += len;
          s.bytesSent += len;
          if (window.length >= WINDOW) await window.shift();
          if (size === 0) break;
        }
        // the tar changed since it was dropped: the receiver refuses the blob too; fail it here, clearly
        if (hash.digest('hex') !== sha256) throw new FarmError('RB_BAD_BUNDLE', `${s.bundle.name}: blob ${sha256} does not match its name (the file changed after it was dropped?)`);
      }
    } finally {
      await Promise.allSettled(window); // no publish left unobserved, whatever ended the loop
      await fh.close();
    }
    await Promise.all(window);
    await this.publish(s.key, 'end', linkCodecs.end.encode({ v: PROTOCOL_MAJOR, bundleId: s.bundle.manifest.bundleId, attempt: s.attempt, blobs, bytes: plan.bytes }));
  }

  private async onReceipt(key: string, data: Uint8Array): Promise<void> {
    const r = linkCodecs.receipt.decode(data);
    const s = this.sending.get(key);
    if (!s) return; // a repeated receipt
    if (r.ok) {
      await this.jsm.streams.purge(streams.fedOutbox, { filter: subjects.fedQueueBundle(this.o.site, this.o.peer, key) });
      this.log.info({ bundleId: r.bundleId, bytesSent: s.bytesSent }, 'bundle delivered');
      s.done();
      return;
    }
    if (r.error) {
      s.done(new FarmError(FarmError.fromWire(r.error).code, `${this.o.peer} refused the bundle: ${r.error.message}`));
      return;
    }
    if (r.attempt !== s.attempt) return; // the end of an earlier send (before a restart): its want is being served
    if (++s.resends > MAX_RESENDS) {
      // retryable: the watcher offers it again later (a new attempt), and gives up after its own limit
      s.done(new FarmError('RB_BAD_BLOB', `${this.o.peer} still misses ${r.missing.length} blobs after ${MAX_RESENDS} resends`, { retryable: true }));
      return;
    }
    this.log.warn({ bundleId: r.bundleId, missing: r.missing.length }, 'peer misses blobs: sending them again');
    void this.sendBlobs(s, r.missing).catch((err: unknown) => s.done(FarmError.from(err, 'RB_OUTPUT_FAILED')));
  }
}

async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  await writeFile(`${path}.part`, data, { mode: 0o600 });
  await rename(`${path}.part`, path);
}
