import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `fn` until it returns something truthy and returns that; a throw counts as "not yet".
 * After `timeoutMs` it throws, naming what it waited for and the last error seen. Shared by the
 * tests, the chaos driver and the fuzzer.
 */
export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}
