import { performance } from 'node:perf_hooks';
import { Packr, pack } from 'msgpackr';
import { encodeAny, FarmError, PROTOCOL_MAJOR, type Codec, type ErrorCode } from '../../protocol/index.ts';
import { FILL, type Expectation, type FarmFacts, type SemanticCase } from './fuzz-messages.ts';
import { Rng } from './fuzz-prng.ts';

/*
 * The fuzzer's cases: what each family sends and how it must be answered. Apart from the
 * hand-made cases (tools/chaos/fuzz-messages.ts), only messages our own codec refuses are made,
 * each with the error code that codec gives: a peer must answer with the same.
 */

export type Family =
  | 'random-bytes' | 'random-msgpack' | 'mutated' | 'wrong-major' | 'oversize' | 'semantic' | 'backtracking';

export interface FuzzCase {
  family: Family;
  label: string;
  data: Uint8Array;
  expect: Expectation;
  /** Slower than this is a finding. */
  slowMs?: number;
  /** Why no reply could come back, when the error we expect would not fit in one. */
  overflow?: string;
}

/** What a subject's cases are made from. */
export interface CaseSource {
  /** The subject template of the catalog. */
  template: string;
  request: Codec<unknown>;
  /** A valid message to break, when there is one. */
  base: unknown;
  semantic: SemanticCase[];
}

const SCHEDULE: Family[] = [
  'mutated', 'random-msgpack', 'random-bytes', 'wrong-major', 'mutated', 'semantic', 'random-msgpack', 'mutated', 'random-bytes', 'wrong-major',
  'mutated', 'random-msgpack', 'semantic', 'mutated', 'random-bytes', 'oversize', 'mutated', 'random-msgpack', 'wrong-major', 'semantic',
];
const recordPackr = new Packr({ useRecords: true });

export function accepts(codec: Codec<unknown>, value: unknown): boolean {
  try {
    codec.check(value);
    return true;
  } catch {
    return false;
  }
}

export function reason(codec: Codec<unknown>, value: unknown): string {
  try {
    codec.check(value);
    return 'valid';
  } catch (err) {
    return (err as Error).message;
  }
}

/** What our own codec says about bytes: the error a peer must answer with, or that it is valid. */
export function predict(codec: Codec<unknown>, data: Uint8Array): { valid: true } | { valid: false; code: ErrorCode; message: string } {
  try {
    codec.decode(data);
    return { valid: true };
  } catch (err) {
    const fe = FarmError.from(err);
    return { valid: false, code: fe.code, message: fe.message };
  }
}

/** One case of a subject: the hand-made ones first, then the families of SCHEDULE in turn. */
export function makeCase(t: CaseSource, index: number, r: Rng, facts: FarmFacts, limit: number, note: (s: string) => void): FuzzCase | undefined {
  let family: Family;
  let sc: SemanticCase | undefined;
  /** How many cases of this family the subject had before this one. */
  let ordinal = 0;
  if (index < t.semantic.length) {
    family = 'semantic';
    sc = t.semantic[index];
  } else {
    const j = index - t.semantic.length;
    const f = SCHEDULE[j % SCHEDULE.length]!;
    family = f;
    ordinal = Math.floor(j / SCHEDULE.length) * SCHEDULE.filter((x) => x === f).length + SCHEDULE.slice(0, j % SCHEDULE.length).filter((x) => x === f).length;
    if (family === 'semantic') {
      const small = t.semantic.filter((x) => !x.once);
      if (small.length > 0) sc = r.pick(small);
      else family = 'mutated';
    }
  }
  if (sc) return semanticCase(t, sc, r, facts, limit, note);
  const keys = Object.keys((t.base ?? {}) as object);
  for (let attempt = 0; attempt < 8; attempt++) {
    const c = family === 'oversize' ? oversize(r, t.request, t.base, limit) : malformed(family, r, t.request, t.base, keys, facts, ordinal);
    if (c) return c;
  }
  return undefined;
}

function semanticCase(t: CaseSource, sc: SemanticCase, r: Rng, facts: FarmFacts, limit: number, note: (s: string) => void): FuzzCase | undefined {
  const value = sc.make(facts, r);
  if (value === undefined) return undefined;
  const filled = hasFill(value);
  const data = filled ? fillToLimit(value, limit - r.int(0, 16)) : encodeAny(value);
  if (data.length > limit) {
    note(`${t.template}: hand-made case '${sc.label}' is ${data.length} bytes, over the limit; not sent`);
    return undefined;
  }
  let expect = sc.expect;
  const p = predict(t.request, data);
  if (!p.valid) {
    note(`${t.template}: hand-made case '${sc.label}' no longer reaches the handler (${p.code}: ${p.message.slice(0, 120)})`);
    expect = { refuse: p.code };
  }
  return { family: 'semantic', label: sc.label, data, expect, ...(filled ? { overflow: overflowNote(data.length) } : {}) };
}

function overflowNote(requestBytes: number): string {
  return `the request was ${requestBytes} bytes: an error that quotes the field makes a reply over max_payload, which nats.js refuses to send`;
}

/**
 * A message our codec refuses, of one family; undefined when this draw happened to be valid
 * (the caller draws again). Expectation: refused with the code our codec gives.
 */
export function malformed(family: Family, r: Rng, codec: Codec<unknown>, base: unknown, keys: string[], facts: FarmFacts, ordinal?: number): FuzzCase | undefined {
  let data: Uint8Array;
  let label: string;
  switch (family) {
    case 'random-bytes':
      [data, label] = randomBytes(r, base);
      break;
    case 'wrong-major': {
      if (base === undefined) return malformed('random-msgpack', r, codec, base, keys, facts);
      // in turn, so that a short run has the first ones on every subject
      const v = ordinal === undefined ? r.pick(WRONG_MAJORS) : WRONG_MAJORS[ordinal % WRONG_MAJORS.length];
      data = encodeAny({ ...(base as object), v });
      label = `v: ${JSON.stringify(v)}`;
      break;
    }
    case 'mutated': {
      if (base === undefined) return malformed('random-msgpack', r, codec, base, keys, facts);
      const m = mutate(r, base, facts);
      data = encodeAny(m.value);
      label = m.label;
      break;
    }
    default: {
      const shaped = r.bool(0.6) && keys.length > 0;
      const value = shaped ? shapedValue(r, keys, facts) : randomValue(r, 0, keys, facts);
      const how = r.int(0, 2);
      data = how === 0 ? pack(value) : how === 1 ? recordPackr.pack(value) : encodeAny(value);
      label = `${shaped ? 'shaped' : 'any'} value, ${['msgpackr pack', 'msgpackr records', 'plain msgpack'][how]}`;
      family = 'random-msgpack';
    }
  }
  const p = predict(codec, data);
  if (p.valid) return undefined;
  return { family, label, data, expect: { refuse: p.code } };
}

/** Payloads at the limit: garbage, a protocol major or key that is a megabyte long, or a huge field. */
function oversize(r: Rng, codec: Codec<unknown>, base: unknown, limit: number): FuzzCase | undefined {
  const size = limit - r.int(0, 64);
  const how = base === undefined ? 0 : r.int(0, 3);
  let data: Uint8Array;
  let label: string;
  if (how === 0) {
    data = new Rng(r.int(0, 2 ** 31)).bytes(size);
    data[0] = r.pick([0xc1, 0xde, 0xdf, 0x93, 0xc6]);
    label = `${size} random bytes`;
  } else if (how === 1) {
    data = fillToLimit({ ...(base as object), v: FILL }, size);
    label = 'a protocol major that is a near-limit string';
  } else if (how === 2) {
    const value = structuredClone(base) as Record<string, unknown>;
    const holder = pickObject(r, value);
    holder[FILL_KEY] = true;
    data = fillToLimit(value, size);
    label = 'a near-limit key';
  } else {
    const value = structuredClone(base);
    const paths = leafPaths(value).filter((p) => p.length > 0 && p[p.length - 1] !== 'v');
    if (paths.length === 0) return undefined;
    const path = r.pick(paths);
    setPath(value, path, FILL);
    data = fillToLimit(value, size);
    label = `/${path.join('/')} as a near-limit string`;
  }
  if (data.length > limit) return undefined;
  const p = predict(codec, data);
  if (p.valid) return undefined;
  const replyBytes = encodeAny({ v: PROTOCOL_MAJOR, ok: false, error: { code: p.code, message: p.message, retryable: false } }).length;
  return {
    family: 'oversize', label, data, expect: { refuse: p.code },
    ...(replyBytes > limit ? { overflow: `its error reply would be ${replyBytes} bytes (${p.code} quotes the payload), over max_payload ${limit}` } : {}),
  };
}

/** Protocol majors a peer must refuse with RB_PROTOCOL_MISMATCH; the first is an object whose toString is not a function. */
const WRONG_MAJORS: unknown[] = [{ toString: 'fuzz' }, PROTOCOL_MAJOR + 1, 0, '1', null, 1.5, -1, 255, true, 2 ** 32, [PROTOCOL_MAJOR], { major: PROTOCOL_MAJOR }];

const FILL_KEY = '\u0000fill-key';

/** Encodes a value with its FILL (a string value, or the key FILL_KEY) grown so the whole is `size` bytes. */
function fillToLimit(value: unknown, size: number): Uint8Array {
  const build = (n: number) => encodeAny(replaceFill(value, '!'.repeat(n)));
  const n0 = Math.max(0, size - build(0).length - 5);
  let data = build(n0);
  const n1 = Math.max(0, n0 + (size - data.length));
  if (n1 !== n0) data = build(n1);
  return data;
}

function hasFill(v: unknown): boolean {
  if (v === FILL) return true;
  if (Array.isArray(v)) return v.some(hasFill);
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) return Object.entries(v).some(([k, x]) => k === FILL_KEY || hasFill(x));
  return false;
}

function replaceFill(v: unknown, s: string): unknown {
  if (v === FILL) return s;
  if (Array.isArray(v)) return v.map((x) => replaceFill(x, s));
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k === FILL_KEY ? `k${s}` : k] = replaceFill(x, s);
    return out;
  }
  return v;
}

const NUMBERS = [0, -0, 1, -1, 0.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 2 ** 63, 1e308, -1e308, NaN, Infinity, -Infinity, Number.MIN_VALUE, 65, 127, 128, 255];
const WORDS = [
  '', ' ', 'idle', 'busy', 'draining', 'done', 'failed', 'returned', 'kill-task', 'drain', 'stop', 'cancel', 'jobs', 'job', 'command', 'povray',
  'fuzz-nojob', 'fuzz-nojob.0', '1-3', '5-1', '1x1', '../../etc/passwd', 'A B', 'ü', '\u0000', '\u202e', 'x'.repeat(65), '__proto__', 'constructor',
];
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'v', ''];

function randomString(r: Rng): string {
  switch (r.int(0, 3)) {
    case 0:
      return r.pick(WORDS);
    case 1:
      return r.string(r.int(0, 40));
    case 2:
      return r.string(r.int(1, 20), 'aZ09 /\\"\'{}[]<>.*#@\n\t\u00e9\u4e2d\ud83d\ude00');
    default:
      return r.string(r.int(100, 3000), 'abc#/');
  }
}

function randomValue(r: Rng, depth: number, keys: string[], facts: FarmFacts): unknown {
  switch (r.int(0, depth >= 3 ? 6 : 9)) {
    case 0:
      return r.pick(NUMBERS);
    case 1:
      return r.int(-1_000_000, 1_000_000);
    case 2:
    case 3:
      return r.bool(0.1) ? facts.host : randomString(r);
    case 4:
      return r.pick([true, false, null]);
    case 5:
      return r.bytes(r.int(0, 32));
    case 6:
      return r.bool() ? new Date(r.int(-1e12, 1e13)) : new Map([[r.string(3), r.int(0, 9)]]);
    case 7:
      return Array.from({ length: r.int(0, 5) }, () => randomValue(r, depth + 1, keys, facts));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = r.int(0, 5); i > 0; i--) {
        const k = r.bool(0.5) && keys.length > 0 ? r.pick(keys) : r.bool(0.2) ? r.pick(HOSTILE_KEYS) : r.string(r.int(1, 8));
        Object.defineProperty(out, k, { value: randomValue(r, depth + 1, keys, facts), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
  }
}

/** An object with the message's own field names (usually with v right), holding random values. */
function shapedValue(r: Rng, keys: string[], facts: FarmFacts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (r.bool(0.8)) out[k] = k === 'v' && r.bool(0.8) ? PROTOCOL_MAJOR : randomValue(r, 1, keys, facts);
  return out;
}

function randomBytes(r: Rng, base: unknown): [Uint8Array, string] {
  const valid = base === undefined ? encodeAny({ v: PROTOCOL_MAJOR }) : encodeAny(base);
  switch (r.int(0, 7)) {
    case 0:
      return [new Uint8Array(0), 'empty payload'];
    case 1: {
      const cut = r.int(1, Math.max(1, valid.length - 1));
      return [valid.slice(0, cut), `a valid message cut at byte ${cut} of ${valid.length}`];
    }
    case 2: {
      const tail = r.bytes(r.int(1, 8));
      const out = new Uint8Array(valid.length + tail.length);
      out.set(valid);
      out.set(tail, valid.length);
      return [out, 'a valid message with trailing bytes'];
    }
    case 3: {
      const out = valid.slice();
      for (let i = r.int(1, 3); i > 0; i--) {
        const at = r.int(0, out.length - 1);
        out[at] = out[at]! ^ (1 << r.int(0, 7));
      }
      return [out, 'a valid message with flipped bits'];
    }
    case 4: {
      const bombs = ['ddffffffff', 'dfffffffff', 'dbffffffff', 'c6ffffffff', 'c9ffffffff01', 'de7fff', 'c1', 'd4ff00', 'c7007300', 'd47200'];
      const hex = r.pick(bombs);
      return [Uint8Array.from(Buffer.from(hex, 'hex')), `length bomb or odd extension ${hex}`];
    }
    case 5: {
      const depth = r.int(1_000, 50_000);
      return [new Uint8Array(depth).fill(r.bool() ? 0x91 : 0x81), `arrays or maps nested ${depth} deep`];
    }
    default: {
      const n = r.int(1, 300);
      return [r.bytes(n), `${n} random bytes`];
    }
  }
}

type Path = (string | number)[];

function leafPaths(v: unknown, path: Path = [], out: Path[] = []): Path[] {
  if (Array.isArray(v)) v.forEach((x, i) => leafPaths(x, [...path, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) leafPaths(x, [...path, k], out);
  else out.push(path);
  return out;
}

function allPaths(v: unknown, path: Path = [], out: Path[] = []): Path[] {
  if (path.length > 0) out.push(path);
  if (Array.isArray(v)) v.forEach((x, i) => allPaths(x, [...path, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) allPaths(x, [...path, k], out);
  return out;
}

function getPath(v: unknown, path: Path): unknown {
  let cur = v;
  for (const p of path) cur = (cur as Record<string | number, unknown>)?.[p];
  return cur;
}

export function setPath(v: unknown, path: Path, value: unknown): void {
  let cur = v as Record<string | number, unknown>;
  for (let i = 0; i < path.length - 1; i++) {
    const p = path[i]!;
    if (cur[p] === null || typeof cur[p] !== 'object') cur[p] = typeof path[i + 1] === 'number' ? [] : {};
    cur = cur[p] as Record<string | number, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function pickObject(r: Rng, v: Record<string, unknown>): Record<string, unknown> {
  const objs = [v, ...allPaths(v).map((p) => getPath(v, p)).filter((x): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x))];
  return r.pick(objs);
}

/** The base message with one thing broken: a field missing, of the wrong type, out of range, or one too many. */
function mutate(r: Rng, base: unknown, facts: FarmFacts): { value: unknown; label: string } {
  const value = structuredClone(base) as Record<string, unknown>;
  const paths = allPaths(value);
  const path = r.pick(paths);
  const where = `/${path.join('/')}`;
  const parent = (path.length === 1 ? value : getPath(value, path.slice(0, -1))) as Record<string | number, unknown>;
  const key = path[path.length - 1]!;
  const old = parent[key];
  switch (r.int(0, 4)) {
    case 0:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
      return { value, label: `${where} missing` };
    case 1: {
      const wrong = r.pick<unknown>([0, -1, 'x', '', true, null, [], {}, [old], { value: old }, new Uint8Array([1, 2])]);
      parent[key] = wrong;
      return { value, label: `${where} as ${describe(wrong)}` };
    }
    case 2: {
      let odd: unknown;
      if (typeof old === 'number') odd = r.pick([-1, -0.5, 0.5, 1e21, 2 ** 31, 2 ** 53 + 2, NaN, Infinity, -Infinity, old + 0.5, -old - 1]);
      else if (typeof old === 'string') odd = r.pick(['', ' ', 'UPPER', 'has space', 'a/b', '../..', '\u0000', 'é', 'x'.repeat(65), 'x'.repeat(r.int(200, 5000)), `${old}\n`]);
      else if (Array.isArray(old)) odd = r.bool() ? [] : [...old, randomValue(r, 2, [], facts)];
      else if (typeof old === 'boolean') odd = r.pick(['true', 1, 0]);
      else odd = randomValue(r, 2, [], facts);
      parent[key] = odd;
      return { value, label: `${where} out of range: ${describe(odd)}` };
    }
    case 3: {
      const holder = pickObject(r, value);
      const k = r.pick(['fuzzExtra', 'extra', '__proto__', 'constructor', 'V', r.string(5)]);
      Object.defineProperty(holder, k, { value: randomValue(r, 2, [], facts), enumerable: true, writable: true, configurable: true });
      return { value, label: `an unknown field '${k}'` };
    }
    default: {
      delete value.v;
      return { value, label: '/v missing' };
    }
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return v.length > 20 ? `a ${v.length}-char string` : JSON.stringify(v);
  if (v instanceof Uint8Array) return 'bytes';
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.slice(0, 40);
  } catch {
    return String(v);
  }
}

/**
 * A string that makes `pattern` backtrack, if it does: measured here on growing inputs, and
 * sized so that one match takes about 150 ms. Undefined for patterns that run in linear time.
 */
export function backtrackingProbe(pattern: string): { text: string; how: string; growth: string } | undefined {
  const re = new RegExp(pattern);
  const literal = [...new Set(pattern.replace(/\\./g, '').replace(/[\^$.*+?()[\]{}|]/g, ''))];
  const chars = [...new Set([...literal, 'a', '0', 'x', '#'])];
  const ends = [...new Set(['/', '\n', '!', ' ', 'A', '\u0000', ...literal])];
  const time = (s: string) => {
    const t0 = performance.now();
    re.test(s);
    return performance.now() - t0;
  };
  let best: { c: string; e: string; ms: number } | undefined;
  for (const c of chars) {
    for (const e of ends) {
      const s = c.repeat(100) + e;
      if (re.test(s)) continue;
      const ms = time(s);
      if (!best || ms > best.ms) best = { c, e, ms };
    }
  }
  if (!best) return undefined;
  const t200 = time(best.c.repeat(200) + best.e);
  const t400 = time(best.c.repeat(400) + best.e);
  if (t400 < 3 || t400 / Math.max(t200, 0.01) < 2.8) return undefined;
  const k = Math.log2(t400 / Math.max(t200, 0.01));
  const n = Math.round(Math.min(50_000, Math.max(400, 400 * (150 / t400) ** (1 / k))));
  const in10k = t400 * (10_000 / 400) ** k;
  return {
    text: best.c.repeat(n) + best.e,
    how: `${n} × ${JSON.stringify(best.c)} then ${JSON.stringify(best.e)}`,
    growth: `matching time grows as n^${k.toFixed(1)} (${t400.toFixed(0)} ms at n=400 here): a 10 kB string would hold the event loop ~${Math.round(in10k / 1000)} s`,
  };
}
