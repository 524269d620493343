import { jetstream, jetstreamManager, DeliverPolicy, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { replicasOf } from '../bus/index.ts';
import { codecs, FarmError, PROTOCOL_MAJOR, streams, subjects, type JournalRecord } from '../../protocol/index.ts';

type TaskRecord = Extract<JournalRecord, { kind: 'task' }>;
interface Pending {
  rec: JournalRecord;
  id: string | undefined;
  done: (err: unknown, seq?: number) => void;
}

/** Task records stored in one message at most (well under a NATS message: a record is ~200 bytes). */
const MAX_BATCH = 500;

const DAY_NS = 24 * 3600 * 1e9;

/**
 * JetStream API errors that mean its store is full: 10023 insufficient resources (over
 * max_file_store: the site's guard sets it so while the disk is nearly full), 10047 storage
 * resources exceeded, 10002 account resources exceeded.
 */
const STORE_FULL_CODES = new Set([10023, 10047, 10002]);
/** How often failing journal writes are logged as a warning. */
const WARN_EVERY_MS = 10_000;

/** A failed journal write as the farm's error: a full store says so (RB_STORAGE_FULL); both are retryable. */
export function journalWriteError(what: string, cause: unknown): FarmError {
  const said = (cause as Error).message;
  const full = (cause instanceof JetStreamApiError && STORE_FULL_CODES.has(cause.code)) || /no space left on device/i.test(said);
  if (full) {
    return new FarmError('RB_STORAGE_FULL', `the site's data disk is full: nats-server could not store ${what} (${said}); try again once space is freed on the disk of its JetStream store (<data>/nats with renderbus up)`, { cause, retryable: true });
  }
  return new FarmError('RB_SCHEDULER_UNAVAILABLE', `could not store ${what} durably: ${said}`, { cause, retryable: true });
}

/**
 * The scheduler's durable state: an append-only journal in JetStream (file store) that is
 * replayed on start. The same call keeps the site's event stream, so monitors can replay
 * recent events. See docs/architecture.md, "Durability".
 */
export class Journal {
  /** Appends not written yet: written together at the end of this turn of the loop. */
  private queue: Pending[] = [];
  /** When a failed write was last logged as a warning: once every WARN_EVERY_MS while they fail. */
  private warnedAt = -Infinity;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly site: string,
    private readonly log: Logger,
  ) {}

  /**
   * Opens (makes, or brings up to date) the journal and event streams. `replicas`: copies of
   * each; by default what the server says of itself (replicasOf: 3 on a cluster, 1 alone), so
   * every scheduler agrees without a flag. A stream made on one server grows to R3 when the
   * farm moves onto a cluster (nats-server 2.9.10 takes that update and copies it over).
   */
  static async open(nc: NatsConnection, site: string, log: Logger, o: { replicas?: number } = {}): Promise<Journal> {
    // no $JS.API.INFO probe: on a cluster that has just lost a member it timed out for tens of
    // seconds while the streams' own requests were answered (a standby could not take over)
    const jsm = await jetstreamManager(nc, { timeout: 5_000, checkAPI: false });
    const num_replicas = o.replicas ?? replicasOf(nc);
    await ensureStream(jsm, log, {
      name: streams.journal(site),
      subjects: [subjects.allJournal(site)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: 0,
      duplicate_window: 120 * 1e9,
      num_replicas,
    });
    await ensureStream(jsm, log, {
      name: streams.events(site),
      subjects: subjects.storedEvents(site),
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: 7 * DAY_NS,
      max_bytes: 1024 * 1024 * 1024,
      num_replicas,
    });
    return new Journal(jetstream(nc, { timeout: 5_000 }), site, log);
  }

  /**
   * Appends one record; resolves once JetStream has stored it. Records appended in the same turn
   * of the loop are written in order, consecutive task records together as one batch message:
   * at thousands of results a second one write per result was an eighth of the scheduler's time
   * and most of nats-server's. `id` makes a record written alone idempotent; a replay applies
   * every record idempotently anyway.
   */
  append(rec: JournalRecord, id?: string): Promise<void> {
    return this.appendAt(rec, id).then(() => {});
  }

  /** Appends one record (as append); resolves with the stream sequence of the message that holds it. */
  appendAt(rec: JournalRecord, id?: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ rec, id, done: (err, seq) => (err === undefined ? resolve(seq ?? 0) : reject(err)) });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Writes what was appended, in order: runs of task records as batches, anything else alone. */
  private flush(): void {
    const queue = this.queue;
    this.queue = [];
    let i = 0;
    while (i < queue.length) {
      let j = i + 1;
      if (queue[i]!.rec.kind === 'task') while (j < queue.length && j - i < MAX_BATCH && queue[j]!.rec.kind === 'task') j += 1;
      void this.write(queue.slice(i, j));
      i = j;
    }
  }

  private async write(group: Pending[]): Promise<void> {
    const first = group[0]!;
    try {
      let ack;
      if (group.length === 1) {
        ack = await this.js.publish(subjects.journal(this.site, first.rec.kind), codecs.journalEntry.encode(first.rec), first.id ? { msgID: first.id } : undefined);
      } else {
        const records = group.map((p) => p.rec as TaskRecord);
        ack = await this.js.publish(subjects.journal(this.site, 'batch'), codecs.journalEntry.encode({ v: PROTOCOL_MAJOR, kind: 'batch', records }));
      }
      for (const p of group) p.done(undefined, ack.seq);
    } catch (cause) {
      const err = journalWriteError(group.length === 1 ? `the ${first.rec.kind} record` : `${group.length} task records`, cause);
      // each request that waited on it is refused at debug level; an operator must see the farm stall
      if (performance.now() - this.warnedAt >= WARN_EVERY_MS) {
        this.warnedAt = performance.now();
        const hint = /no responders|not enabled/i.test((cause as Error).message)
          ? `: nats-server has no leader for the journal stream ${streams.journal(this.site)} (on a cluster: docs/cluster.md, "Limits")`
          : '';
        this.log.warn({ err: (cause as Error).message }, `journal writes are failing; the farm waits, results are held by the render servers${hint}`);
      }
      for (const p of group) p.done(err);
    }
  }

  /**
   * Replays every record in order (batches record by record), each with the stream sequence of
   * its message; a record that no longer decodes is logged and skipped. Returns how many records.
   */
  replay(apply: (rec: JournalRecord, seq: number) => void): Promise<number> {
    return this.readFrom(1, apply);
  }

  /**
   * One job's records, read back from the journal from stream sequence `fromSeq` on (its
   * submit record's): a job that left the scheduler's memory (retention) is rebuilt from them.
   */
  async jobRecords(jobId: string, fromSeq: number): Promise<JournalRecord[]> {
    const out: JournalRecord[] = [];
    await this.readFrom(fromSeq, (rec) => {
      if ('jobId' in rec && rec.jobId === jobId) out.push(rec);
    });
    return out;
  }

  private async readFrom(fromSeq: number, apply: (rec: JournalRecord, seq: number) => void): Promise<number> {
    const jsm = await this.js.jetstreamManager(false); // no $JS.API.INFO probe: see open()
    const info = await jsm.streams.info(streams.journal(this.site));
    if (info.state.messages === 0 || info.state.last_seq < fromSeq) return 0;
    const consumer = await this.js.consumers.get(streams.journal(this.site), fromSeq > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq } : undefined);
    const iter = await consumer.consume({ max_messages: 1000 });
    let n = 0;
    for await (const m of iter) {
      let records: JournalRecord[] = [];
      try {
        const entry = codecs.journalEntry.decode(m.data);
        records = entry.kind === 'batch' ? entry.records : [entry];
      } catch (err) {
        this.log.warn({ err, seq: m.seq }, 'skipped unreadable journal record');
      }
      for (const rec of records) {
        n += 1;
        try {
          apply(rec, m.seq);
        } catch (err) {
          this.log.warn({ err, seq: m.seq, kind: rec.kind }, 'skipped a journal record that could not be applied');
        }
      }
      if (m.info.pending === 0) break;
    }
    await iter.close();
    return n;
  }
}

async function ensureStream(jsm: JetStreamManager, log: Logger, wanted: Partial<StreamConfig> & { name: string }): Promise<void> {
  let had: StreamConfig;
  try {
    had = (await jsm.streams.info(wanted.name)).config;
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw new Error(`stream ${wanted.name}: info failed (${(err as Error).message})`, { cause: err });
    await jsm.streams.add(wanted);
    return;
  }
  // Copies only grow (a farm moving onto a cluster), never shrink: a server lists fewer members
  // while one is down, and shrinking a stream then dropped a live copy and kept the dead one's
  // place, leaving the journal with no leader until that member came back (docs/cluster.md).
  const cfg = wanted.num_replicas !== undefined && wanted.num_replicas < had.num_replicas ? { ...wanted, num_replicas: had.num_replicas } : wanted;
  // unchanged: no update, which needs the cluster's meta leader (a takeover while a member is down
  // found updates timing out for as long as it stayed down, and could not open its journal)
  const same = Object.entries(cfg).every(([k, v]) => JSON.stringify(had[k as keyof StreamConfig]) === JSON.stringify(v));
  if (same) return;
  try {
    await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    // a change of copies needs every member it lands on: with one down, keep the stream as it is
    // (the next start tries again) rather than leave the farm without its journal
    if (cfg.num_replicas === undefined || cfg.num_replicas === had.num_replicas) {
      const differs = Object.keys(cfg).filter((k) => JSON.stringify(had[k as keyof StreamConfig]) !== JSON.stringify(cfg[k as keyof StreamConfig]));
      throw new Error(`stream ${cfg.name}: update of ${differs.join(', ')} failed (${(err as Error).message})`, { cause: err });
    }
    log.warn({ err, stream: cfg.name, replicas: had.num_replicas, wanted: cfg.num_replicas }, 'could not change the stream\'s number of copies: kept as it is');
    await jsm.streams.update(cfg.name, { ...cfg, num_replicas: had.num_replicas });
  }
}
