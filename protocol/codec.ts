import { Packr } from 'msgpackr';
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { FarmError } from './errors.ts';
import { PROTOCOL_MAJOR } from './version.ts';

// Plain MessagePack (no msgpackr-only records) so any NATS tool in any language can read it.
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Hard ceiling matching nats-server's default max_payload. */
export const MAX_PAYLOAD = 1024 * 1024;

export interface Codec<T> {
  encode(msg: T): Uint8Array;
  decode(bytes: Uint8Array): T;
  /** Validates an already-decoded value (e.g. a parsed JSON job file). */
  check(value: unknown): T;
}

/** Encoder/decoder for one message schema; nothing inbound is trusted before the check. */
export function codecFor<S extends TSchema>(schema: S): Codec<Static<S>> {
  // compiled on first use: a process compiles the few schemas it speaks, not all sixty
  let checker: TypeCheck<S> | undefined;
  const check = (value: unknown): Static<S> => {
    const compiled = (checker ??= TypeCompiler.Compile(schema));
    if (value !== null && typeof value === 'object' && 'v' in value && (value as { v: unknown }).v !== PROTOCOL_MAJOR) {
      throw new FarmError('RB_PROTOCOL_MISMATCH', `message speaks protocol ${describeVersion((value as { v: unknown }).v)}, this peer speaks ${PROTOCOL_MAJOR}`);
    }
    if (!compiled.Check(value)) {
      const e = compiled.Errors(value).First();
      throw new FarmError('RB_SCHEMA_MISMATCH', `${e?.path || '/'}: ${e?.message ?? 'invalid'}`);
    }
    return value;
  };
  return {
    encode: (msg) => packr.pack(msg),
    decode(bytes) {
      if (bytes.length > MAX_PAYLOAD) throw new FarmError('RB_DECODE_FAILED', `payload of ${bytes.length} bytes exceeds ${MAX_PAYLOAD}`);
      let value: unknown;
      try {
        value = packr.unpack(bytes);
      } catch (cause) {
        throw new FarmError('RB_DECODE_FAILED', undefined, { cause });
      }
      return check(value);
    },
    check,
  };
}

/** Decodes without a schema, for tools that print whatever flows (tail). */
export function decodeAny(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (cause) {
    throw new FarmError('RB_DECODE_FAILED', undefined, { cause });
  }
}

export function encodeAny(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** A peer's `v` as text, whatever it is (String() throws on an object whose toString is not a function). */
function describeVersion(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `a${Array.isArray(v) ? 'n array' : 'n object'} (not a number)`;
}
