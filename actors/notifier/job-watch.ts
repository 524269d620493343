import { notifyPlan, type JobEvent, type JobNotify, type NotifyPlan, type NotifyProblem, type NotifyTrigger } from '../../protocol/index.ts';
import type { Notification, Sample } from './notification.ts';

/** What the notifier keeps about one job while it runs. Pure data: every change makes a new one. */
export interface JobWatch {
  /** What the job asked for; null: nothing to send (its events are still followed to its end). */
  plan: NotifyPlan | null;
  /** Its settings are being looked up: the events that matter wait in `pending`. */
  looking: boolean;
  pending: JobEvent[];
  /** The last progress step told, in percent (0: none yet). */
  lastStep: number;
  /** The latest finished frame with a file (jobs with progress notifications only). */
  sample?: Sample;
}

const END_EVENTS: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);

/** A job's end: nothing follows it (unless the job is retried, which starts a new watch). */
export const isEnd = (event: string): boolean => END_EVENTS.has(event);

/** A job whose settings are not known yet, holding the event that made it known. */
export function lookingWatch(first: JobEvent): JobWatch {
  return withPending({ plan: null, looking: true, pending: [], lastStep: 0 }, first);
}

/** A job's watch once its settings are known. */
export function watchFor(notify: JobNotify | undefined, pending: JobEvent[] = []): { watch: JobWatch; problems: NotifyProblem[] } {
  const made = notifyPlan(notify);
  const plan = made ? made.plan : null;
  return { watch: { plan, looking: false, pending, lastStep: 0 }, problems: made ? made.problems : [] };
}

/** Keeps an event for later: only an end and the latest progress matter, so the list stays short. */
export function withPending(w: JobWatch, evt: JobEvent): JobWatch {
  if (evt.event === 'progress') return { ...w, pending: [...w.pending.filter((e) => e.event !== 'progress'), evt] };
  if (isEnd(evt.event)) return { ...w, pending: [...w.pending, evt] };
  return w;
}

/** A frame finished with a file: the job's next progress notification shows it. */
export function withSample(w: JobWatch, sample: Sample): JobWatch {
  return w.plan?.everyPercent !== undefined ? { ...w, sample } : w;
}

/**
 * What one job event sends. The end sends what `on` asks for; progress sends when the share of
 * frames finished (done or failed) passes the next multiple of `everyPercent` below 100 (the end
 * tells the rest), once per step, and only the highest step passed when several were at once.
 */
export function onJobEvent(w: JobWatch, evt: JobEvent): { watch: JobWatch; notes: Notification[] } {
  const plan = w.plan;
  if (!plan) return { watch: w, notes: [] };
  const trigger = evt.event as NotifyTrigger;
  if (isEnd(evt.event)) {
    return { watch: w, notes: plan.on.includes(trigger) ? notificationsFor(plan, evt, trigger) : [] };
  }
  if (evt.event !== 'progress' || plan.everyPercent === undefined || !plan.on.includes('progress')) return { watch: w, notes: [] };
  const { total, done, failed } = evt.job.counts;
  if (total === 0) return { watch: w, notes: [] };
  const percent = Math.floor(((done + failed) * 100) / total);
  const step = Math.floor(percent / plan.everyPercent) * plan.everyPercent;
  if (step <= w.lastStep || step <= 0 || step >= 100) return { watch: w, notes: [] };
  return { watch: { ...w, lastStep: step }, notes: notificationsFor(plan, evt, 'progress', step, w.sample) };
}

/** One notification per webhook URL and one email to all the addresses, sharing one id. */
export function notificationsFor(plan: NotifyPlan, evt: JobEvent, trigger: NotifyTrigger, percent?: number, sample?: Sample): Notification[] {
  const id = `${evt.jobId}.${trigger}${percent !== undefined ? `-${percent}` : ''}.${evt.at}`;
  const common = { id, trigger, event: evt, ...(percent !== undefined ? { percent } : {}), ...(sample ? { sample } : {}) };
  const notes: Notification[] = plan.webhooks.map((url) => ({ ...common, channel: 'webhook', to: [url] }));
  if (plan.email.length > 0) notes.push({ ...common, channel: 'email', to: [...plan.email] });
  return notes;
}
