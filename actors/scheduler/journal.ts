import { jetstream, jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { codecs, FarmError, streams, subjects, type JournalRecord } from '../../protocol/index.ts';

const DAY_NS = 24 * 3600 * 1e9;

/**
 * The scheduler's durable state: an append-only journal in JetStream (file store) that is
 * replayed on start. The same call keeps the site's event stream, so monitors can replay
 * recent events. See docs/architecture.md, "Durability".
 */
export class Journal {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly site: string,
    private readonly log: Logger,
  ) {}

  static async open(nc: NatsConnection, site: string, log: Logger): Promise<Journal> {
    const jsm = await jetstreamManager(nc, { timeout: 5_000 });
    await ensureStream(jsm, {
      name: streams.journal(site),
      subjects: [subjects.allJournal(site)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: 0,
      duplicate_window: 120 * 1e9,
    });
    await ensureStream(jsm, {
      name: streams.events(site),
      subjects: subjects.storedEvents(site),
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: 7 * DAY_NS,
      max_bytes: 1024 * 1024 * 1024,
    });
    return new Journal(jetstream(nc, { timeout: 5_000 }), site, log);
  }

  /** Appends one record; resolves once JetStream has stored it. `id` makes a retry idempotent. */
  async append(rec: JournalRecord, id?: string): Promise<void> {
    try {
      await this.js.publish(subjects.journal(this.site, rec.kind), codecs.journalRecord.encode(rec), id ? { msgID: id } : undefined);
    } catch (cause) {
      throw new FarmError('RB_SCHEDULER_UNAVAILABLE', `could not store the ${rec.kind} record durably: ${(cause as Error).message}`, { cause, retryable: true });
    }
  }

  /** Replays every record in order; a record that no longer decodes is logged and skipped. */
  async replay(apply: (rec: JournalRecord) => void): Promise<number> {
    const jsm = await this.js.jetstreamManager();
    const info = await jsm.streams.info(streams.journal(this.site));
    if (info.state.messages === 0) return 0;
    const consumer = await this.js.consumers.get(streams.journal(this.site));
    const iter = await consumer.consume({ max_messages: 1000 });
    let n = 0;
    for await (const m of iter) {
      n += 1;
      try {
        apply(codecs.journalRecord.decode(m.data));
      } catch (err) {
        this.log.warn({ err, seq: m.seq }, 'skipped unreadable journal record');
      }
      if (m.info.pending === 0) break;
    }
    await iter.close();
    return n;
  }
}

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
    await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
    await jsm.streams.add(cfg);
  }
}
