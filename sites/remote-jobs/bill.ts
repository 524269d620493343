import type { BillLine, BundleBill, FrameRecord } from '../../protocol/index.ts';

/**
 * What this site charges a peer (`<data>/fed/rates.json`, rate-card.ts): per core-hour of CPU time
 * and per GB (10^9 bytes) of output, in the currency's minor unit, and a minimum per bill. The
 * default is all zeros in `XXX` (ISO 4217's "no currency"): a bill states the measured figures
 * and invents no price.
 */
export interface RateCard {
  currency: string;
  perCoreHourMinor: number;
  perGbMinor: number;
  minimumMinor: number;
  /** What this site adds to the bills of the sites it passes a job on to (chaining), per job; default 0. */
  forwardMinor?: number;
}

export const NO_RATES: RateCard = { currency: 'XXX', perCoreHourMinor: 0, perGbMinor: 0, minimumMinor: 0 };

const MS_PER_HOUR = 3_600_000;
const BYTES_PER_GB = 1e9;

/**
 * The bill of a job from its frames as the scheduler reports them (pure). One line per frame
 * done, in frame order. A task of several frames is measured once: its figures are shared out
 * evenly over its frames (the remainder to the first), so the totals are the tasks' own.
 * CPU time is user + system of the whole process tree, so CPU hours are core hours. The amount:
 * CPU hours × rate + GB written × rate, each rounded to the minor unit, at least the minimum
 * once anything was rendered.
 */
export function billOf(frames: readonly FrameRecord[], rate: RateCard): BundleBill {
  const done = frames.filter((f) => f.state === 'done' && f.stats !== undefined);
  const byTask = new Map<string, FrameRecord[]>();
  for (const f of done) {
    const key = `${f.taskIndex}/${f.attempt}`;
    const list = byTask.get(key);
    if (list) list.push(f);
    else byTask.set(key, [f]);
  }
  const lines: BillLine[] = [];
  for (const list of byTask.values()) {
    const s = list[0]!.stats!;
    const share = (total: number, i: number) => {
      const t = Math.round(total);
      const each = Math.floor(t / list.length);
      return i === 0 ? t - each * (list.length - 1) : each;
    };
    list.forEach((f, i) => {
      const line: BillLine = { frame: f.frame, host: f.host ?? 'unknown', wallMs: share(s.wallMs, i), cpuMs: share(s.cpuMs, i), bytes: share(s.bytesWritten, i) };
      // peak memory is not shared out: each frame of the task ran in that memory
      if (s.peakRssKb > 0) line.peakRssMb = Math.ceil(s.peakRssKb / 1024);
      lines.push(line);
    });
  }
  lines.sort((a, b) => a.frame - b.frame);
  const sum = (k: 'wallMs' | 'cpuMs' | 'bytes') => lines.reduce((n, l) => n + l[k], 0);
  const totals = { frames: lines.length, wallMs: sum('wallMs'), cpuMs: sum('cpuMs'), bytes: sum('bytes'), amountMinor: 0 };
  const amount = Math.round((totals.cpuMs * rate.perCoreHourMinor) / MS_PER_HOUR) + Math.round((totals.bytes * rate.perGbMinor) / BYTES_PER_GB);
  totals.amountMinor = lines.length > 0 ? Math.max(amount, rate.minimumMinor) : 0;
  return {
    currency: rate.currency,
    rate: { perCoreHourMinor: rate.perCoreHourMinor, perGbMinor: rate.perGbMinor, minimumMinor: rate.minimumMinor },
    frames: lines,
    totals,
  };
}
