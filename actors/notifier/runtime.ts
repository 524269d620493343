import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, fromPromise, waitFor } from 'xstate';
import { codecs, eventFrames, FarmError, PROTOCOL_MAJOR, subjects, type NotifyEvent } from '../../protocol/index.ts';
import { call, listen } from '../bus/index.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './backoff.ts';
import { EmailSender, type MakeThumbnail, type SmtpSettings } from './email.ts';
import { AckBook } from './ack-book.ts';
import { openJobEventFeed } from './job-event-feed.ts';
import { notifierMachine, STOPPED_EARLY, type LookupResult } from './machine.ts';
import { DeliveryError, type DeliveryReceipt, type Notification, type Outcome } from './notification.ts';
import { retryingMachine } from './retry-machine.ts';
import { postWebhook, webhookOrigin, webhookRequest } from './webhook.ts';
import { parseWebhookAllow } from './webhook-address.ts';

export interface NotifierOptions {
  nc: NatsConnection;
  site: string;
  log: Logger;
  /** The site's mail server; without it, email notifications fail (reported as events). */
  smtp?: SmtpSettings;
  /** Signs every webhook body (x-renderbus-signature); without it webhooks go out unsigned. */
  webhookSecret?: string;
  /**
   * Addresses webhooks may reach although they are refused by default (loopback, link-local,
   * this machine's own…): `127.0.0.1:9000`, `10.0.0.0/8`, `[::1]` (webhook-address.ts).
   */
  webhookAllow?: string[];
  /** How notifications are retried (default: 5 attempts, waits of 1, 2, 4, 8 s). */
  retry?: Partial<RetryPolicy>;
  /** On stop, how long notifications in flight may finish (default 5 s). */
  stopGraceMs?: number;
  /** Makes an email's thumbnail (default: actors/media, a 320 px JPEG). */
  thumbnail?: MakeThumbnail;
  now?: () => number;
}

export interface NotifierHandle {
  stop(): Promise<void>;
}

const THUMBNAIL_PX = 320;

/** A 320 px JPEG of a frame, by the shared thumbnail helper (sharp, loaded on first use). */
const defaultThumbnail: MakeThumbnail = async (path) => {
  const { thumbnail } = await import('../media/index.ts');
  return thumbnail(path, { width: THUMBNAIL_PX, height: THUMBNAIL_PX, format: 'jpeg', quality: 80 });
};

/**
 * Binds the notifier machine to NATS: job settings from the journal's submit records (or a
 * `sched.query` for a job first met through an event), job events from the site's event stream
 * through a durable consumer (acknowledged once their notifications are sent or given up, so none
 * is lost while no notifier runs or when one dies mid-delivery), frame events for sample frames,
 * notifications out by webhook (undici) and email (nodemailer), and each outcome as
 * `evt.notify.<job>.<sent|failed>`.
 */
export async function startNotifier(o: NotifierOptions): Promise<NotifierHandle> {
  const { nc, site } = o;
  const log = o.log.child({ actor: 'notifier', site });
  const now = o.now ?? Date.now;
  const retry: RetryPolicy = { ...DEFAULT_RETRY, ...o.retry };
  const stopGraceMs = o.stopGraceMs ?? 5_000;
  const secret = o.webhookSecret;
  const allow = parseWebhookAllow(o.webhookAllow ?? []); // a bad entry fails the start
  const email = o.smtp
    ? new EmailSender(o.smtp, site, o.thumbnail ?? defaultThumbnail, (err, path) => log.warn({ err, path }, 'no thumbnail of the sample frame; the email says where it is'))
    : null;

  const publish = (evt: NotifyEvent) => {
    try {
      nc.publish(subjects.notifyEvent(site, evt.jobId, evt.event), codecs.notifyEvent.encode(evt));
    } catch (err) {
      log.warn({ err, jobId: evt.jobId }, 'could not publish a notify event');
    }
  };

  const lookup = fromPromise<unknown, unknown>(async ({ input }): Promise<LookupResult> => {
    const { jobId } = input as { jobId: string };
    try {
      const body = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.queryReply, {
        timeoutMs: 5_000,
        unavailable: 'RB_SCHEDULER_UNAVAILABLE',
      });
      if (!('job' in body)) return { found: false };
      const notify = body.job.spec.notify;
      return notify === undefined ? { found: true } : { found: true, notify };
    } catch (err) {
      if (err instanceof FarmError && err.code === 'RB_UNKNOWN_JOB') return { found: false };
      throw err; // retryable when nobody answered
    }
  });

  const deliver = fromPromise<unknown, unknown>(async ({ input }): Promise<DeliveryReceipt> => {
    const note = input as Notification;
    try {
      if (note.channel === 'webhook') {
        await postWebhook(note.to[0]!, webhookRequest(note, site, secret, now()), { allow });
        return {};
      }
      if (!email) throw new DeliveryError('this site has no SMTP server for email (renderbus notifier --smtp URL, or RB_SMTP_URL)', false);
      return await email.send(note);
    } catch (err) {
      log.info({ err, jobId: note.event.jobId, id: note.id, channel: note.channel, to: shownTo(note) }, 'notification attempt failed');
      throw err;
    }
  });

  const machine = notifierMachine.provide({
    actors: {
      lookupJob: retryingMachine.provide({ actors: { task: lookup } }),
      deliver: retryingMachine.provide({ actors: { task: deliver } }),
    },
    actions: {
      publishOutcome: (_, out: Outcome) => {
        const n = out.note;
        if (!out.ok && out.error === STOPPED_EARLY) acks.stoppedEarly(n.event.jobId); // its event comes back on restart
        const evt: NotifyEvent = {
          v: PROTOCOL_MAJOR,
          jobId: n.event.jobId,
          event: out.ok ? 'sent' : 'failed',
          at: now(),
          id: n.id,
          trigger: n.trigger,
          channel: n.channel,
          to: shownTo(n),
          attempts: out.attempts,
          ...(n.percent !== undefined ? { percent: n.percent } : {}),
          ...(n.sample ? { sample: n.sample } : {}),
          ...(out.error !== undefined ? { error: out.error } : {}),
          ...(out.receipt?.thumbnail !== undefined ? { thumbnail: out.receipt.thumbnail } : {}),
        };
        const fields = { jobId: evt.jobId, id: n.id, channel: n.channel, to: evt.to, attempts: out.attempts };
        if (out.ok) log.info(fields, 'notification sent');
        else log.warn({ ...fields, error: out.error }, 'notification given up');
        publish(evt);
      },
      settingsProblem: (_, p) => {
        const error = p.problems.map((x) => `${x.field}: ${x.message}`).join('; ');
        log.warn({ jobId: p.jobId, error }, "a job's notify settings are contradictory; what can be sent is sent");
        publish({ v: PROTOCOL_MAJOR, jobId: p.jobId, event: 'failed', at: now(), attempts: 0, error });
      },
      lookupFailed: (_, p) => log.warn({ jobId: p.jobId, attempts: p.attempts, error: p.error }, "could not look up a job's notify settings; its notifications are lost"),
    },
  });

  const acks = new AckBook();
  const actor = createActor(machine, {
    input: { retry, lookupRetry: DEFAULT_RETRY, stopGraceMs },
  });
  actor.subscribe({
    next: (s) => acks.settle(s.context), // a job's events are acknowledged once nothing of it is left to do
    error: (err) => log.error({ err }, 'notifier machine failed'),
  });
  actor.start();
  // deliveries retry for up to a minute: keep their events from being delivered again meanwhile
  const keepAlive = setInterval(() => acks.working(), 10_000);

  const subs: Subscription[] = [
    // the submit record carries the job's settings before any of its events (same publisher, in order)
    listen(nc, subjects.journal(site, 'submit'), codecs.journalRecord, log, (rec) => {
      if (rec.kind === 'submit') actor.send({ type: 'job.submitted', jobId: rec.jobId, ...(rec.spec.notify !== undefined ? { notify: rec.spec.notify } : {}) });
    }),
    listen(nc, subjects.allFrameEvents(site, 'done'), codecs.frameEvent, log, (evt) => {
      for (const f of eventFrames(evt)) if (f.output !== undefined) actor.send({ type: 'frame.done', jobId: evt.jobId, sample: { frame: f.frame, output: f.output } });
    }),
  ];
  await nc.flush().catch((err: unknown) => log.warn({ err }, 'connection dropped while starting; going on'));
  const feed = await openJobEventFeed(nc, site, log, (evt, msg) => {
    acks.add(evt.jobId, msg);
    actor.send({ type: 'job.event', evt });
  });
  if (secret === undefined) log.warn('webhooks go out unsigned: no secret given (RB_WEBHOOK_SECRET or --webhook-secret-file)');
  log.info({ smtp: o.smtp ? smtpHost(o.smtp.url) : null, signed: secret !== undefined, webhookAllow: o.webhookAllow ?? [], attempts: retry.attempts }, 'notifier started');

  let stopping: Promise<void> | null = null;
  return {
    stop: () => {
      stopping ??= (async () => {
        for (const s of subs) s.unsubscribe();
        await feed.stop();
        actor.send({ type: 'notifier.stop' });
        await waitFor(actor, (s) => s.status === 'done', { timeout: stopGraceMs + 1_000 }).catch(() => {});
        actor.stop();
        clearInterval(keepAlive);
        const back = acks.giveBack();
        if (back > 0) log.info({ events: back }, 'job events not fully handled go back to the stream for the next notifier');
        email?.close();
        log.info('notifier stopped');
      })();
      return stopping;
    },
  };
}

/** Recipients as events and logs show them: addresses, or a webhook's origin. */
function shownTo(n: Notification): string[] {
  return n.channel === 'webhook' ? n.to.map(webhookOrigin) : n.to;
}

/** The SMTP server without its credentials, for the log. */
function smtpHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(not a URL)';
  }
}
