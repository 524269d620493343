import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { JobEvent } from '../../protocol/index.ts';

/**
 * Tells a job's webhooks that it ended: a JSON POST of the job event, retried with backoff
 * (1 s, 4 s, 16 s) on network errors and 5xx answers. Never throws; failures are logged.
 */
export async function postWebhook(url: string, evt: JobEvent, log: Logger, attempts = 4): Promise<boolean> {
  const body = JSON.stringify(evt);
  // loaded on first use: undici costs ~0.13 s at every scheduler start, and most farms send no webhook
  const { request } = await import('undici');
  for (let i = 0; i < attempts; i++) {
    try {
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'renderbus', 'x-renderbus-event': evt.event },
        body,
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      await res.body.dump();
      if (res.statusCode < 500) {
        if (res.statusCode >= 400) log.warn({ url, status: res.statusCode, jobId: evt.jobId }, 'webhook refused');
        return res.statusCode < 400;
      }
      log.warn({ url, status: res.statusCode, jobId: evt.jobId, attempt: i + 1 }, 'webhook failed');
    } catch (err) {
      log.warn({ err, url, jobId: evt.jobId, attempt: i + 1 }, 'webhook failed');
    }
    if (i + 1 < attempts) await sleep(1000 * 4 ** i);
  }
  return false;
}
