import { PROTOCOL_MAJOR, type WebhookPayload } from '../../protocol/index.ts';
import { DeliveryError, type Notification } from './notification.ts';
import { SIGNATURE_HEADER, signBody } from './signature.ts';

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

/**
 * Sends one attempt. Resolves on a 2xx answer; otherwise throws a DeliveryError, retryable for
 * network errors, timeouts, 429 and 5xx. Redirects are not followed (the URL should be the final one).
 */
export async function postWebhook(url: string, req: WebhookRequest, timeoutMs = 10_000): Promise<void> {
  // loaded on first use: undici costs ~0.13 s to load, and many farms send no webhook
  const { request } = await import('undici');
  let status: number;
  try {
    const res = await request(url, { method: 'POST', headers: req.headers, body: req.body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    status = res.statusCode;
    await res.body.dump();
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new DeliveryError(`${code ? `${code}: ` : ''}${(cause as Error).message}`, true, { cause });
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
