import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { serve } from '../../actors/bus/index.ts';
import { codecs, FarmError, PROTOCOL_MAJOR, subjects, type PeerQuote, type QuoteFile, type QuotesRequest } from '../../protocol/index.ts';
import { FileHashes } from './file-hashes.ts';

export interface QuoteAskerOptions {
  site: string;
  /** FARM, as the site-link role: it serves `rb.<us>.link.quotes` and asks `rb.fedsvc.<peer>.<us>.quote`. */
  nc: NatsConnection;
  /** The linked peers as they are now. */
  peers: () => readonly string[];
  log: Logger;
}

/** Each peer's wait when the request names none (docs/federation.md: no answer means no offer). */
const DEFAULT_WAIT_MS = 5_000;

/**
 * The studio's half (docs/federation.md, "Choosing where to render: quotes"): the scheduler cannot
 * talk across a link, so it asks here (`rb.<us>.link.quotes`). The job's files are hashed (once
 * while unchanged), every linked peer is asked in parallel, and every answer comes back: a quote,
 * the peer's refusal, or `did not answer in 5 s` (a link that is down simply gives no offer).
 */
export function serveQuoteAsker(o: QuoteAskerOptions): { stop(): void } {
  const log = o.log.child({ part: 'quote-asker' });
  const hashes = new FileHashes();
  const sub: Subscription = serve(o.nc, { subject: subjects.linkQuotes(o.site), request: codecs.quotesRequest, reply: codecs.quotesReply, log, handle: ask });

  async function ask(req: QuotesRequest) {
    const files = await hashes.of(req.paths);
    const waitMs = req.timeoutMs ?? DEFAULT_WAIT_MS;
    const answers = await Promise.all(o.peers().map((peer) => askOne(peer, req, files, waitMs)));
    log.info({ jobId: req.jobId, answers: answers.map((a) => ({ peer: a.peer, ms: a.ms, ...(a.error !== undefined ? { error: a.error } : { finishMs: a.quote?.finishMs }) })) }, 'quotes asked');
    return { answers, files: files.length, bytes: files.reduce((n, f) => n + f.size, 0) };
  }

  async function askOne(peer: string, req: QuotesRequest, files: QuoteFile[], waitMs: number): Promise<PeerQuote> {
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    try {
      const m = await o.nc.request(subjects.fedSvc(peer, o.site, 'quote'), codecs.quoteRequest.encode({ v: PROTOCOL_MAJOR, jobId: req.jobId, job: req.job, files, at: Date.now() }), { timeout: waitMs });
      const r = codecs.quoteReply.decode(m.data);
      if (!r.ok) return { peer, error: `refused to quote: ${r.error.code}: ${r.error.message}`.slice(0, 2000), ms: ms() };
      // the answer names the site it came from: a peer answering for another is not taken at its word
      if (r.body.site !== peer) return { peer, error: `answered as '${r.body.site}'`, ms: ms() };
      return { peer, quote: r.body, ms: ms() };
    } catch (err) {
      const name = (err as Error).name;
      // no answer in time, or nobody there to answer (the link down, the peer's services not running): no offer
      if (name === 'TimeoutError') return { peer, error: `did not answer in ${Math.round(waitMs / 1000)} s`, ms: ms() };
      if (name === 'RequestError' && (err as Error).cause instanceof Error && ((err as Error).cause as Error).name === 'NoResponders') return { peer, error: 'did not answer (nothing there answers quotes: its link is down, or its services are not running)', ms: ms() };
      return { peer, error: `no quote: ${FarmError.from(err).message}`.slice(0, 2000), ms: ms() };
    }
  }

  return { stop: () => sub.unsubscribe() };
}
