import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { PROTOCOL_MAJOR, type WebhookPayload } from '../../protocol/index.ts';
import { DeliveryError, type Notification } from './notification.ts';
import { SIGNATURE_HEADER, signBody } from './signature.ts';
import { isAllowed, plainAddress, refusedAddress, type WebhookAllowEntry } from './webhook-address.ts';

/** One attempt's request: the body is signed as these exact bytes. */
export interface WebhookRequest {
  body: string;
  headers: Record<string, string>;
}

/**
 * The POST of one attempt: the JSON payload (WebhookPayload: the job event's fields plus id,
 * site, sentAt and, for progress, percent and sample) and its headers. With a secret the body
 * is signed (x-renderbus-signature); x-renderbus-id and x-renderbus-timestamp repeat the body's
 * `id` and `sentAt` so a receiver can drop replays before parsing.
 */
export function webhookRequest(note: Notification, site: string, secret: string | undefined, sentAt: number): WebhookRequest {
  const evt = note.event;
  const payload: WebhookPayload = {
    v: PROTOCOL_MAJOR,
    id: note.id,
    site,
    jobId: evt.jobId,
    event: note.trigger,
    at: evt.at,
    sentAt,
    job: evt.job,
    ...(evt.failures ? { failures: evt.failures } : {}),
    ...(note.percent !== undefined ? { percent: note.percent } : {}),
    ...(note.sample ? { sample: note.sample } : {}),
  };
  const body = JSON.stringify(payload);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'renderbus',
    'x-renderbus-event': note.trigger,
    'x-renderbus-id': note.id,
    'x-renderbus-timestamp': String(sentAt),
  };
  if (secret !== undefined) headers[SIGNATURE_HEADER] = signBody(secret, body);
  return { body, headers };
}

/** Resolves a host name to every address it has (node:dns `lookup`, as a connection would). */
export type Resolve = (host: string) => Promise<{ address: string; family: number }[]>;

export interface PostOptions {
  /** Time for the answer's headers, then for its body (default 10 s). */
  timeoutMs?: number;
  /** Addresses the site lets webhooks reach although they are refused by default (webhook-address.ts). */
  allow?: readonly WebhookAllowEntry[];
  /** How host names are resolved (default: the system's resolver). */
  resolve?: Resolve;
}

const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Where one webhook may go: the URL's host resolved once, every address checked (webhook-address.ts).
 * Throws a DeliveryError that is not retried when an address is refused: the same URL would be
 * refused again. A name that does not resolve is retried, as a network error.
 */
export async function webhookTarget(url: string, o: PostOptions = {}): Promise<{ address: string; family: 4 | 6; port: number }> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DeliveryError('refused: not a URL', false);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new DeliveryError(`refused: ${u.protocol} is not http: or https:`, false);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  let addresses: { address: string; family: number }[];
  try {
    addresses = await (o.resolve ?? systemResolve)(host);
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new DeliveryError(`${code ? `${code}: ` : ''}cannot resolve ${host}`, true, { cause });
  }
  if (addresses.length === 0) throw new DeliveryError(`cannot resolve ${host}`, true);
  // one refused address refuses the name: a name that also points at this machine is a trick
  for (const a of addresses) {
    const why = refusedAddress(a.address);
    if (why !== null && !isAllowed(o.allow ?? [], a.address, port)) {
      const shown = plainAddress(a.address);
      const entry = shown.includes(':') ? `[${shown}]:${port}` : `${shown}:${port}`;
      const via = shown === host.toLowerCase() ? shown : `${host} (${shown})`;
      throw new DeliveryError(`refused: ${via} is ${why}; the site allows such webhooks with --webhook-allow ${entry} (or RB_WEBHOOK_ALLOW)`, false);
    }
  }
  const first = addresses[0]!;
  return { address: first.address, family: first.family === 6 ? 6 : 4, port };
}

/**
 * Sends one attempt. Resolves on a 2xx answer; otherwise throws a DeliveryError, retryable for
 * network errors, timeouts, 429 and 5xx. Redirects are not followed (the URL should be the final
 * one). The connection goes to the address webhookTarget checked (a lookup that always answers
 * it), so a second DNS answer cannot send the POST elsewhere; Host and TLS name stay the URL's.
 */
export async function postWebhook(url: string, req: WebhookRequest, o: PostOptions = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const target = await webhookTarget(url, o);
  // loaded on first use: undici costs ~0.13 s to load, and many farms send no webhook
  const { Agent, request } = await import('undici');
  const pinned: LookupFunction = (_host, opts, cb) => {
    if (opts.all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  };
  const agent = new Agent({ connect: { lookup: pinned }, pipelining: 0 });
  let status: number;
  try {
    const res = await request(url, { method: 'POST', headers: req.headers, body: req.body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, dispatcher: agent });
    status = res.statusCode;
    await res.body.dump();
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new DeliveryError(`${code ? `${code}: ` : ''}${(cause as Error).message}`, true, { cause });
  } finally {
    agent.destroy().catch(() => {});
  }
  if (status >= 200 && status < 300) return;
  if (status === 429 || status >= 500) throw new DeliveryError(`HTTP ${status}`, true);
  if (status >= 300 && status < 400) throw new DeliveryError(`HTTP ${status}: redirects are not followed (give the final URL)`, false);
  throw new DeliveryError(`HTTP ${status}: refused`, false);
}

/** A webhook URL as events and logs show it: its origin only, since paths often hold a token. */
export function webhookOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(not a URL)';
  }
}
