import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call, serve } from '../../actors/bus/index.ts';
import {
  codecs, DEFAULT_FRAME_MS, estimateFinish, FarmError, FrameTimeSource, PROTOCOL_MAJOR, quotePrice, subjects,
  type Quote, type QuoteRequest,
} from '../../protocol/index.ts';
import { PeerCas } from '../cas/index.ts';
import { loadRateCard } from '../remote-jobs/rate-card.ts';

export interface QuoteServiceOptions {
  site: string;
  dataDir: string;
  /** FARM, as the site-link role: it serves `rb.fedsvc.<us>.<peer>.quote` and may ask `reg.match` and `sched.load`. */
  nc: NatsConnection;
  peers: readonly string[];
  log: Logger;
}

/** How long the registry and the scheduler are given: a quote is answered well within the studio's wait. */
const ASK_MS = 2_000;
/**
 * Quotes of one peer answered at once; more are refused (RB_TOO_MANY_REQUESTS, retryable). Each
 * costs the registry and the scheduler a request: a peer flooding quotes must not load them.
 */
export const MAX_QUOTES_IN_FLIGHT = 4;

/**
 * The vendor's half of a quote (docs/federation.md, "Choosing where to render: quotes"): a peer
 * asks on `rb.fedsvc.<us>.<peer>.quote` (its DMZ account lets only that peer's requests reach
 * this subject); the answer says whether a host here matches (`reg.match`, with the closest
 * hosts when none does), the matching slots (free and in all), the frames ahead at that priority
 * and the measured frame time (the scheduler's `sched.load`), the bytes its content store for
 * that peer still lacks, the rate card for that peer, and the estimate and price from them.
 */
export function serveQuotes(o: QuoteServiceOptions): { stop(): void } {
  const log = o.log.child({ part: 'quotes' });
  const stores = new Map<string, Promise<PeerCas>>();
  const storeOf = (peer: string) => {
    let s = stores.get(peer);
    if (!s) stores.set(peer, (s = PeerCas.open(o.dataDir, peer)));
    return s;
  };
  const inFlight = new Map<string, number>();
  const limited = async (peer: string, req: QuoteRequest): Promise<Quote> => {
    const n = inFlight.get(peer) ?? 0;
    if (n >= MAX_QUOTES_IN_FLIGHT) throw new FarmError('RB_TOO_MANY_REQUESTS', `${peer} has ${n} quotes being answered here; at most ${MAX_QUOTES_IN_FLIGHT} at once`, { retryable: true });
    inFlight.set(peer, n + 1);
    try {
      return await quote(peer, req);
    } finally {
      inFlight.set(peer, (inFlight.get(peer) ?? 1) - 1);
    }
  };
  const subs: Subscription[] = o.peers.map((peer) =>
    serve(o.nc, { subject: subjects.fedSvc(o.site, peer, 'quote'), request: codecs.quoteRequest, reply: codecs.quoteReply, log, handle: (req) => limited(peer, req) }),
  );

  async function quote(peer: string, req: QuoteRequest): Promise<Quote> {
    const [match, load, cas, rate] = await Promise.all([
      call(o.nc, subjects.regMatch(o.site), codecs.matchRequest, { v: PROTOCOL_MAJOR, requirements: req.job.requirements }, codecs.matchReply, { timeoutMs: ASK_MS, unavailable: 'RB_REGISTRY_UNAVAILABLE' }),
      call(o.nc, subjects.schedLoad(o.site), codecs.loadRequest, { v: PROTOCOL_MAJOR, renderer: req.job.renderer, priority: req.job.priority }, codecs.loadReply, { timeoutMs: ASK_MS, unavailable: 'RB_SCHEDULER_UNAVAILABLE' }),
      storeOf(peer),
      loadRateCard(o.dataDir, peer),
    ]);
    // what the store lacks (the receiver's own want-list rule): a vendor holding the textures is quicker;
    // the same content named twice crosses once
    const missing = await cas.has(req.files.map((f) => f.sha256));
    const sizes = new Map(req.files.map((f) => [f.sha256, f.size]));
    const missingBytes = missing.reduce((n, h) => n + (sizes.get(h) ?? 0), 0);
    const missingFiles = missing.length;
    const slots = match.hosts.reduce((n, h) => n + h.slots.length, 0);
    const freeSlots = match.hosts.reduce((n, h) => n + h.free, 0);
    const frameFrom = load.frameMs !== undefined ? FrameTimeSource.Measured : req.job.frameMs !== undefined ? FrameTimeSource.Studio : FrameTimeSource.Default;
    const frameMs = load.frameMs ?? req.job.frameMs ?? DEFAULT_FRAME_MS;
    const est = estimateFinish({ frames: req.job.frames, slots, framesAhead: load.framesAhead, frameMs, missingBytes });
    const finite = (ms: number) => (Number.isFinite(ms) ? ms : 0);
    const q: Quote = {
      site: o.site,
      canRender: slots > 0,
      freeSlots,
      slots,
      framesAhead: load.framesAhead,
      frameMs,
      frameFrom,
      missingBytes,
      missingFiles,
      rate: { currency: rate.currency, perCoreHourMinor: rate.perCoreHourMinor, perGbMinor: rate.perGbMinor, minimumMinor: rate.minimumMinor },
      transferMs: est.transferMs,
      queueMs: finite(est.queueMs),
      renderMs: finite(est.renderMs),
      finishMs: finite(est.finishMs),
      price: quotePrice(req.job.frames, frameMs, rate),
    };
    if (slots === 0) q.closest = match.closest.slice(0, 5).map((c) => ({ host: c.host, missing: c.missing.slice(0, 20) }));
    log.info({ peer, jobId: req.jobId, canRender: q.canRender, slots, framesAhead: q.framesAhead, missingBytes, finishMs: q.finishMs, price: q.price }, 'quoted a job');
    return q;
  }

  return {
    stop: () => {
      for (const s of subs) s.unsubscribe();
    },
  };
}
