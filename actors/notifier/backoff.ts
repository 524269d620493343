/** How a notification (or a look-up) is retried: `attempts` in all, waiting longer after each failure. */
export interface RetryPolicy {
  /** Attempts in all, the first one included. */
  attempts: number;
  /** Wait after the first failure, in ms; it doubles after each further one. */
  firstDelayMs: number;
  /** The longest wait, in ms. */
  maxDelayMs: number;
}

/** Five attempts over about 15 s: waits of 1, 2, 4 and 8 s. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, firstDelayMs: 1_000, maxDelayMs: 60_000 };

/** The wait after attempt `failed` (1, 2, …) failed: firstDelayMs doubling, capped at maxDelayMs. */
export function backoffMs(policy: RetryPolicy, failed: number): number {
  const n = Math.max(1, Math.floor(failed));
  return Math.min(policy.maxDelayMs, policy.firstDelayMs * 2 ** (n - 1));
}

/** Every wait between attempts, in order (attempts - 1 of them). */
export function backoffSchedule(policy: RetryPolicy): number[] {
  return Array.from({ length: Math.max(0, policy.attempts - 1) }, (_, i) => backoffMs(policy, i + 1));
}
