import { Type, type Static } from '@sinclair/typebox';
import { FarmError } from '../errors.ts';
import { Millis, Token, V } from './common.ts';
import { EMAIL_ADDRESS_PATTERN } from '../patterns.ts';

/** What a job's notifications can be about: its end (done, failed, cancelled) and its progress. */
export const NotifyTrigger = { Done: 'done', Failed: 'failed', Cancelled: 'cancelled', Progress: 'progress' } as const;
export type NotifyTrigger = (typeof NotifyTrigger)[keyof typeof NotifyTrigger];
export const NOTIFY_TRIGGERS: readonly NotifyTrigger[] = Object.values(NotifyTrigger);
const TriggerSchema = Type.Union(NOTIFY_TRIGGERS.map((t) => Type.Literal(t)));

/** What a job is told about when `on` is not given: its end, whichever way it ends. */
export const DEFAULT_NOTIFY_ON: readonly NotifyTrigger[] = ['done', 'failed', 'cancelled'];

/** A plain address (`artist@studio.example`); display names are not taken. */
export const EmailAddress = Type.String({ pattern: EMAIL_ADDRESS_PATTERN, maxLength: 254, description: 'an email address, e.g. artist@studio.example' });
const WebhookUrl = Type.String({ pattern: '^https?://', maxLength: 2000, description: 'an http:// or https:// URL' });

/** The object form of a job's `notify` (README.md, "Notifications"). */
export const NotifySettings = Type.Object(
  {
    webhooks: Type.Optional(Type.Array(WebhookUrl, { maxItems: 20, description: 'URLs that get a signed JSON POST' })),
    email: Type.Optional(Type.Array(EmailAddress, { maxItems: 50, description: 'addresses that get an email' })),
    on: Type.Optional(Type.Array(TriggerSchema, { minItems: 1, maxItems: 4, description: "what to tell: done, failed, cancelled, progress (default: done, failed and cancelled, plus progress with everyPercent)" })),
    everyPercent: Type.Optional(Type.Integer({ minimum: 1, maximum: 99, description: 'a progress notification, with a sample frame, every this many percent of the frames' })),
  },
  { additionalProperties: false },
);
export type NotifySettings = Static<typeof NotifySettings>;

/** The original form: webhook URLs told when the job ends. Kept exactly as it was, so stored jobs still decode. */
export const NotifyUrls = Type.Array(Type.String({ pattern: '^https?://' }), { description: 'webhook URLs told when the job ends' });

/** A job's `notify`: webhook URLs (the original form), or the settings object. */
export const JobNotify = Type.Union([NotifyUrls, NotifySettings], {
  description: "webhook URLs told when the job ends, or { webhooks, email, on, everyPercent }",
});
export type JobNotify = Static<typeof JobNotify>;

/** A job's notify settings with the defaults filled in: what the notifier acts on. */
export interface NotifyPlan {
  webhooks: string[];
  email: string[];
  on: NotifyTrigger[];
  /** Progress notifications every this many percent; absent: none. */
  everyPercent?: number;
}

/** A problem of a notify setting the schema cannot see; `field` is dotted, as in `notify.on`. */
export interface NotifyProblem {
  field: string;
  message: string;
}

/**
 * The notify settings as a plan, and what is wrong with them beyond the schema. A plan is made
 * whatever the problems (what is contradictory is left out), so a notifier can still do what it
 * can; clients refuse a job with problems (checkNotify). No notify at all: null.
 */
export function notifyPlan(notify: JobNotify | undefined): { plan: NotifyPlan; problems: NotifyProblem[] } | null {
  if (notify === undefined) return null;
  if (Array.isArray(notify)) return { plan: { webhooks: [...notify], email: [], on: [...DEFAULT_NOTIFY_ON] }, problems: [] };
  const problems: NotifyProblem[] = [];
  const webhooks = [...new Set(notify.webhooks ?? [])];
  const email = [...new Set(notify.email ?? [])];
  if (webhooks.length === 0 && email.length === 0) {
    problems.push({ field: 'notify', message: 'names no webhook URL and no email address to tell (give "webhooks" or "email")' });
  }
  let on: NotifyTrigger[];
  let everyPercent = notify.everyPercent;
  if (notify.on === undefined) {
    on = everyPercent !== undefined ? [...DEFAULT_NOTIFY_ON, 'progress'] : [...DEFAULT_NOTIFY_ON];
  } else {
    on = [...new Set(notify.on)];
    if (on.includes('progress') && everyPercent === undefined) {
      problems.push({ field: 'notify.on', message: "'progress' needs notify.everyPercent (e.g. 25 for every 25% of the frames)" });
      on = on.filter((t) => t !== 'progress');
    }
    if (!on.includes('progress') && everyPercent !== undefined) {
      problems.push({ field: 'notify.everyPercent', message: "is given, but notify.on leaves out 'progress' (add it, or leave \"on\" out)" });
      everyPercent = undefined;
    }
  }
  return { plan: { webhooks, email, on, ...(everyPercent !== undefined ? { everyPercent } : {}) }, problems };
}

/** Refuses notify settings with a problem: FarmError RB_BAD_JOB naming the field. */
export function checkNotify(notify: JobNotify | undefined): void {
  const first = notifyPlan(notify)?.problems[0];
  if (first) throw new FarmError('RB_BAD_JOB', `${first.field}: ${first.message}`);
}

/**
 * Notifier → anyone, on `evt.notify.<job>.<event>`: a notification was `sent` (a webhook answered
 * 2xx, or the SMTP server took the email) or `failed` (given up after `attempts`, with `error`).
 */
export const NotifyEvent = Type.Object({
  v: V,
  jobId: Token,
  event: Type.Union([Type.Literal('sent'), Type.Literal('failed')]),
  at: Millis,
  /** The notification's id: the webhook body's `id` and its x-renderbus-id header. Absent when the job's settings themselves are wrong. */
  id: Type.Optional(Type.String()),
  /** What it told: the job's end, or its progress. Absent when the job's settings themselves are wrong. */
  trigger: Type.Optional(TriggerSchema),
  /** Progress notifications: the step reached, in percent of the frames. */
  percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  channel: Type.Optional(Type.Union([Type.Literal('webhook'), Type.Literal('email')])),
  /** Email addresses; for a webhook its origin only (scheme, host, port): paths often hold tokens. */
  to: Type.Optional(Type.Array(Type.String())),
  attempts: Type.Integer({ minimum: 0 }),
  error: Type.Optional(Type.String()),
  /** Progress notifications: the sample frame shown. */
  sample: Type.Optional(Type.Object({ frame: Type.Integer({ minimum: 0 }), output: Type.String() })),
  /** Email: a thumbnail of the sample frame was attached. */
  thumbnail: Type.Optional(Type.Boolean()),
});
export type NotifyEvent = Static<typeof NotifyEvent>;
