import type { NotifierContext } from './machine.ts';

/** A stored event the notifier must acknowledge once it is handled (a JetStream message). */
export interface Ackable {
  ack(): void;
  nak(): void;
  working(): void;
}

/**
 * Which stored job events are handled: an event is acknowledged once nothing of its job is left
 * to do, i.e. the job's settings are known and none of its notifications is still being
 * delivered. So a notification triggered by an event is sent or given up before the event is
 * acknowledged, and an event whose notification was cut short by a stop comes back on restart.
 * Pure bookkeeping: the caller says when the machine's context changed.
 */
export class AckBook<M extends Ackable = Ackable> {
  private readonly waiting = new Map<string, M[]>();
  /** Jobs with a notification the stop cut short: their events must come back, not be acknowledged. */
  private readonly cutShort = new Set<string>();

  /** An event of a job, about to be handed to the machine. */
  add(jobId: string, msg: M): void {
    const list = this.waiting.get(jobId);
    if (list) list.push(msg);
    else this.waiting.set(jobId, [msg]);
  }

  /** A notification of this job ended because the notifier stopped, not because it was sent or given up. */
  stoppedEarly(jobId: string): void {
    this.cutShort.add(jobId);
  }

  /** Acknowledges the events of every job with nothing left to do in `context`. Returns how many. */
  settle(context: Pick<NotifierContext, 'jobs' | 'inFlight'>): number {
    if (this.waiting.size === 0) return 0;
    const busy = new Set(Object.values(context.inFlight).map((n) => n.event.jobId));
    let n = 0;
    for (const [jobId, msgs] of this.waiting) {
      if (busy.has(jobId) || context.jobs[jobId]?.looking || this.cutShort.has(jobId)) continue;
      for (const m of msgs) m.ack();
      n += msgs.length;
      this.waiting.delete(jobId);
    }
    return n;
  }

  /** Tells the server the events still waiting are being worked on (their ack deadline moves). */
  working(): void {
    for (const msgs of this.waiting.values()) for (const m of msgs) m.working();
  }

  /** On stop: every event not acknowledged goes back, to be delivered again at once (to the next notifier). */
  giveBack(): number {
    let n = 0;
    for (const msgs of this.waiting.values()) for (const m of msgs) {
      m.nak();
      n++;
    }
    this.waiting.clear();
    return n;
  }

  get pending(): number {
    let n = 0;
    for (const msgs of this.waiting.values()) n += msgs.length;
    return n;
  }
}
