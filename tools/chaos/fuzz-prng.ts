import { mulberry32 } from '../lib/prng.ts';

/**
 * A small seeded PRNG (mulberry32) and the helpers the fuzzer draws with. Every case gets a
 * generator of its own, derived from (seed, subject, case number), so a case can be replayed
 * alone and the order requests happen to be answered in never changes what is generated.
 */
export class Rng {
  private readonly draw: () => number;
  constructor(seed: number) {
    this.draw = mulberry32(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    return this.draw();
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    if (list.length === 0) throw new Error('pick from an empty list');
    return list[this.int(0, list.length - 1)]!;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const r = (this.next() * 4294967296) >>> 0;
      out[i] = r & 0xff;
      if (i + 1 < n) out[i + 1] = (r >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (r >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = (r >>> 24) & 0xff;
    }
    return out;
  }

  /** A string of `n` characters drawn from `alphabet`. */
  string(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-_'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
}

/** 32-bit FNV-1a of a string: stable across runs and Node versions. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The generator of one case: a pure function of the run's seed, the subject and the case number. */
export function caseRng(seed: number, subject: string, index: number): Rng {
  let h = (seed ^ hash32(subject)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = (h ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return new Rng((h ^ (h >>> 16)) >>> 0);
}

/** A fresh seed when none is given: printed with every report so a run can be repeated. */
export function randomSeed(): number {
  return (Math.random() * 4294967296) >>> 0;
}
