import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { codecs, streams, subjects, type JobEvent } from '../../protocol/index.ts';

/** The durable consumer of the site's event stream the notifier reads job events from. */
export const NOTIFIER_CONSUMER = 'notifier';
/** How long a job event may stay unacknowledged before the server delivers it again (the feed extends it while work goes on). */
const ACK_WAIT_NS = 30 * 1e9;
const STREAM_POLL_MS = 2_000;

export interface JobEventFeed {
  /** Stops taking events (those taken stay the caller's to ack or give back). */
  stop(): Promise<void>;
}

/**
 * Job events from the site's event stream (`RB_<SITE>_EVT`, which the scheduler creates) through
 * a durable consumer: events published while no notifier ran are delivered when one starts, and
 * an event not acknowledged (the notifier died mid-delivery) is delivered again. The consumer is
 * made on first use and starts with the events published from then on (not the stream's 7 days
 * of history). Waits for the stream when the scheduler has not made it yet.
 */
export async function openJobEventFeed(
  nc: NatsConnection,
  site: string,
  log: Logger,
  onEvent: (evt: JobEvent, msg: JsMsg) => void,
  o: JobEventFeedOptions = {},
): Promise<JobEventFeed> {
  const feed: EventFeedOptions = { consumer: o.consumer ?? NOTIFIER_CONSUMER, filter: subjects.allJobEvents(site), ...(o.deliver ? { deliver: o.deliver } : {}) };
  return openEventFeed(nc, site, log, feed, (m) => {
    let evt: JobEvent;
    try {
      evt = codecs.jobEvent.decode(m.data);
    } catch (err) {
      log.warn({ err, subject: m.subject, seq: m.seq }, 'dropped a malformed job event');
      m.term(); // it will not decode next time either
      return;
    }
    onEvent(evt, m);
  });
}

export interface EventFeedOptions {
  /** The durable consumer's name: one per reader (the notifier, the intake's returner, the studio's packer). */
  consumer: string;
  /** Which of the stream's subjects it takes (one filter: nats-server 2.9 has no multi-filter consumers). */
  filter: string;
  /** 'all': a new consumer starts with the stream's history; 'new' (default): with what is published from then on. */
  deliver?: 'all' | 'new';
}

/** A job-event reader other than the notifier (the studio's packer, sites/outsource): its own consumer, and where it starts. */
export interface JobEventFeedOptions {
  consumer?: string;
  deliver?: 'all' | 'new';
}

/**
 * The same durable reading of the site's event stream for any reader: its own consumer, made on
 * first use from the events published from then on, opened again when lost; each message is the
 * reader's to ack.
 */
export async function openEventFeed(
  nc: NatsConnection,
  site: string,
  log: Logger,
  o: EventFeedOptions,
  onMessage: (msg: JsMsg) => void,
): Promise<JobEventFeed> {
  const stream = streams.events(site);
  let stopped = false;
  let messages: ConsumerMessages | null = null;
  let wake: () => void = () => {};
  const pause = (ms: number) => new Promise<void>((r) => {
    wake = r;
    setTimeout(r, ms);
  });

  /** The consumer, made if missing; null while the stream does not exist. */
  const open = async (): Promise<ConsumerMessages | null> => {
    const jsm = await jetstreamManager(nc, { timeout: 5_000 });
    if (!(await jsm.streams.info(stream).then(() => true, () => false))) return null;
    const exists = await jsm.consumers.info(stream, o.consumer).then(() => true, () => false);
    if (!exists) {
      await jsm.consumers.add(stream, {
        durable_name: o.consumer,
        filter_subject: o.filter,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: o.deliver === 'all' ? DeliverPolicy.All : DeliverPolicy.New,
        ack_wait: ACK_WAIT_NS,
        max_ack_pending: 10_000,
      });
    }
    const consumer = await jetstream(nc, { timeout: 5_000 }).consumers.get(stream, o.consumer);
    const m = await consumer.consume({ max_messages: 256 });
    log.info({ stream, consumer: o.consumer, created: !exists }, 'reading events from the event stream');
    return m;
  };

  // the first attempt is awaited below: a job submitted once the notifier has started is seen
  let firstTried: () => void = () => {};
  const tried = new Promise<void>((r) => (firstTried = r));
  // (re)opens the consumer until stopped: the stream may come later, a consumer may be lost
  const loop = (async () => {
    let waitingSaid = false;
    while (!stopped) {
      try {
        messages = await open().finally(firstTried);
        if (stopped) break;
        if (!messages) {
          if (!waitingSaid) log.info({ stream }, 'waiting for the event stream (the scheduler makes it)');
          waitingSaid = true;
          await pause(STREAM_POLL_MS);
          continue;
        }
        for await (const m of messages) onMessage(m);
        if (!stopped) await pause(STREAM_POLL_MS); // the consumer went away: open it again
      } catch (err) {
        if (stopped) break;
        log.warn({ err, consumer: o.consumer }, 'the event feed failed; opening it again');
        await pause(STREAM_POLL_MS);
      }
    }
  })();

  await tried;
  return {
    stop: async () => {
      stopped = true;
      wake();
      await (messages as ConsumerMessages | null)?.close().catch(() => {});
      await loop;
    },
  };
}
