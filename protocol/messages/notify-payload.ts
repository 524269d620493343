import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token, V } from './common.ts';
import { NOTIFY_TRIGGERS } from './notify.ts';
import { JobSummary } from './scheduler.ts';

/**
 * Notifier → a job's webhook: the JSON body of the POST (docs/notifications.md). It holds the
 * job event's fields (`jobId`, `event`, `at`, `job`, `failures`), so a receiver of the original
 * webhooks reads it unchanged. The x-renderbus-signature header signs these exact bytes.
 */
export const WebhookPayload = Type.Object({
  v: V,
  /** The notification's id, the same in every attempt: a receiver drops an id it has seen. */
  id: Type.String(),
  site: Token,
  jobId: Token,
  /** What it tells: done, failed, cancelled, progress. */
  event: Type.Union(NOTIFY_TRIGGERS.map((t) => Type.Literal(t))),
  /** When the job event happened (ms since the epoch). */
  at: Millis,
  /** When this attempt was sent (ms since the epoch): a receiver refuses old ones (replays). */
  sentAt: Millis,
  job: JobSummary,
  /** Failed jobs: which frames failed and why. */
  failures: Type.Optional(Type.Array(Type.Object({ frame: Type.Integer(), error: Type.String() }))),
  /** Progress: the step reached, in percent of the frames. */
  percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  /** Progress: a recently finished frame and where it is. */
  sample: Type.Optional(Type.Object({ frame: Type.Integer({ minimum: 0 }), output: Type.String() })),
});
export type WebhookPayload = Static<typeof WebhookPayload>;
