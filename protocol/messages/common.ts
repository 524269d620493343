import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { PROTOCOL_MAJOR } from '../version.ts';

/** The protocol major every message carries. */
export const V = Type.Literal(PROTOCOL_MAJOR);

/** Milliseconds since the Unix epoch. */
export const Millis = Type.Number({ minimum: 0 });

export const WireErrorSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  retryable: Type.Boolean(),
});

/** One reply envelope for every request: `{ ok: true, body } | { ok: false, error }`. */
export function Reply<S extends TSchema>(body: S) {
  return Type.Union([
    Type.Object({ v: V, ok: Type.Literal(true), body }),
    Type.Object({ v: V, ok: Type.Literal(false), error: WireErrorSchema }),
  ]);
}
export type ReplyOf<S extends TSchema> = Static<ReturnType<typeof Reply<S>>>;

/** Subject-safe identifier (job ids, host names): lower-case letters, digits, '-', '_'. */
export const Token = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', maxLength: 64 });

export const Resolution = Type.Object({
  width: Type.Integer({ minimum: 1, maximum: 65536 }),
  height: Type.Integer({ minimum: 1, maximum: 65536 }),
});
export type Resolution = Static<typeof Resolution>;
