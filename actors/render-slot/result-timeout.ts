import { timedOut as noReplyInTime } from '../bus/index.ts';

/** The shortest wait for the scheduler to take a result: what every slot waited before. */
export const RESULT_TIMEOUT_MIN_MS = 5_000;
/** The longest: a scheduler that has not answered in a minute is restarting, and its hello wakes the slots. */
export const RESULT_TIMEOUT_MAX_MS = 60_000;

/**
 * How long a render server's slots wait for the scheduler to take a result before sending it
 * again: TCP's retransmission timer (RFC 6298) for `sched.result`.
 *
 * A fixed 5 s timeout turned an overloaded scheduler into a collapsed one. Slots send their next
 * result only once a reply comes, so when results come faster than the scheduler takes them the
 * round trip grows past 5 s; every slot then sent its result again, the scheduler did each one
 * twice or three times, and fell further behind (scale bench, 4 frames a task, 25,000 frames a
 * second asked: 5,527 frames/s dispatched and 151,145 results sent again in 40 s; waiting 30 s
 * instead: 17,519/s and none sent again).
 *
 * So the wait follows the measured round trip, as TCP's does: the smoothed round trip plus four
 * times its variation, from `minMs` to `maxMs`. A request that timed out doubles the wait for the
 * requests after it until a first-time reply is measured again (the backoff); a result sent again
 * waits twice as long as its send before (forAttempt); and a reply to a
 * request sent again is not measured (Karn's rule: it cannot tell which send it answers). One
 * per render server: its slots talk to the same scheduler.
 */
export class ResultTimeout {
  private srtt: number | null = null;
  private rttvar = 0;
  private rto: number;

  constructor(
    readonly minMs = RESULT_TIMEOUT_MIN_MS,
    readonly maxMs = RESULT_TIMEOUT_MAX_MS,
  ) {
    if (!(minMs > 0 && maxMs >= minMs)) throw new RangeError(`result timeout bounds must be 0 < min ≤ max, not ${minMs} and ${maxMs}`);
    this.rto = minMs;
  }

  /** The wait of a result's attempt `attempt` (0: sent the first time); each attempt after waits twice the one before. */
  forAttempt(attempt: number): number {
    return Math.min(this.maxMs, this.rto * 2 ** Math.max(0, attempt));
  }

  /** Sends a result for the `attempt`-th time, with the wait for that attempt, and learns from how long its reply took. */
  async send<T>(attempt: number, request: (timeoutMs: number) => Promise<T>): Promise<T> {
    const sentAt = performance.now();
    const timeoutMs = this.forAttempt(attempt);
    try {
      const reply = await request(timeoutMs);
      if (attempt === 0) this.answered(performance.now() - sentAt);
      return reply;
    } catch (err) {
      if (attempt === 0 && noReplyInTime(err)) this.timedOut(timeoutMs);
      throw err;
    }
  }

  /** A reply to a result sent once came after `ms`. */
  answered(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return;
    if (this.srtt === null) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    this.rto = Math.min(this.maxMs, Math.max(this.minMs, this.srtt + 4 * this.rttvar));
  }

  /**
   * A result's first send got no reply within `waitedMs`: the ones after it wait twice as long.
   * Once: the other slots' requests sent with that same wait, timing out together, say nothing
   * more (sixteen slots must not double it sixteen times).
   */
  timedOut(waitedMs: number): void {
    if (waitedMs >= this.rto) this.rto = Math.min(this.maxMs, this.rto * 2);
  }

  /** The wait of a first attempt now, for logs and tests. */
  get currentMs(): number {
    return this.rto;
  }
}
