import type { JobEvent, NotifyTrigger } from '../../protocol/index.ts';

/** A recently finished frame, shown in progress notifications. */
export interface Sample {
  frame: number;
  /** The frame file (absolute path on the site's storage). */
  output: string;
}

/** One notification to deliver: one webhook URL, or one email to all of a job's addresses. */
export interface Notification {
  /** The same for every recipient and every attempt, e.g. `j123.done.1712345678901`. */
  id: string;
  channel: 'webhook' | 'email';
  /** The webhook URL (one), or the email addresses. */
  to: string[];
  trigger: NotifyTrigger;
  /** Progress: the step reached, in percent of the frames. */
  percent?: number;
  sample?: Sample;
  /** The job event it tells about (summary, counts, failures). */
  event: JobEvent;
}

/** What a delivery reports when it succeeded. */
export interface DeliveryReceipt {
  /** Email: a thumbnail of the sample frame went along. */
  thumbnail?: boolean;
}

/** How a notification ended: delivered, or given up. */
export interface Outcome {
  note: Notification;
  ok: boolean;
  attempts: number;
  error?: string;
  receipt?: DeliveryReceipt;
}

/**
 * A failed attempt. `retryable`: worth another attempt (network error, HTTP 5xx or 429, SMTP
 * 4xx); otherwise the notification is given up at once (HTTP 4xx, SMTP 5xx, no SMTP server).
 */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.retryable = retryable;
  }
}
