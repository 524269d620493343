import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, PROTOCOL_MAJOR, type Codec, type ErrorCode, type WireError } from '../../protocol/index.ts';
import { asRefusal, refusal } from './denials.ts';

type Envelope<B> = { v: 1; ok: true; body: B } | { v: 1; ok: false; error: WireError };

export interface ServeOptions<Req, Body> {
  subject: string;
  request: Codec<Req>;
  reply: Codec<Envelope<Body>>;
  handle: (req: Req, msg: Msg) => Body | Promise<Body>;
  log: Logger;
  queue?: string;
}

/**
 * Answers requests on one subject: decodes and validates, calls the handler, and replies
 * with the envelope. Malformed input and handler errors become error replies; nothing throws
 * out of here, so a bad message never takes an actor down.
 */
export function serve<Req, Body>(nc: NatsConnection, o: ServeOptions<Req, Body>): Subscription {
  return nc.subscribe(o.subject, {
    queue: o.queue,
    callback: (err, msg) => {
      if (err) {
        o.log.warn({ err, subject: o.subject }, 'subscription error');
        return;
      }
      void answer(o, msg);
    },
  });
}

async function answer<Req, Body>(o: ServeOptions<Req, Body>, msg: Msg): Promise<void> {
  let env: Envelope<Body>;
  try {
    const req = o.request.decode(msg.data);
    env = { v: PROTOCOL_MAJOR, ok: true, body: await o.handle(req, msg) };
  } catch (err) {
    const fe = FarmError.from(err);
    if (fe.code === 'RB_REMOTE_UNKNOWN') o.log.error({ err, subject: msg.subject }, 'request handler failed');
    else o.log.debug({ err: fe, subject: msg.subject }, 'request refused');
    env = { v: PROTOCOL_MAJOR, ok: false, error: fe.toWire() };
  }
  if (!msg.reply) return; // a publish, not a request: nothing to answer
  try {
    msg.respond(o.reply.encode(env));
  } catch (err) {
    o.log.warn({ err, subject: msg.subject }, 'could not send reply');
  }
}

/**
 * Sends a request and returns the reply body, or throws a FarmError: the peer's own error,
 * or `unavailable` (retryable) when nobody answered in time.
 */
export async function call<Req, Body>(
  nc: NatsConnection,
  subject: string,
  request: Codec<Req>,
  msg: Req,
  reply: Codec<Envelope<Body>>,
  opts: { timeoutMs?: number; unavailable?: ErrorCode } = {},
): Promise<Body> {
  let data: Uint8Array;
  const denied = refusal(nc, subject);
  try {
    const m = await Promise.race([nc.request(subject, request.encode(msg), { timeout: opts.timeoutMs ?? 5_000 }), denied.refused]);
    data = m.data;
  } catch (cause) {
    const refused = asRefusal(nc, subject, cause); // the server refused this credential the subject
    if (refused) throw refused;
    const code = opts.unavailable ?? 'RB_REMOTE_UNKNOWN';
    throw new FarmError(code, `no answer on ${subject}: ${(cause as Error).message}`, { cause, retryable: true });
  } finally {
    denied.done();
  }
  const env = reply.decode(data);
  if (!env.ok) throw FarmError.fromWire(env.error);
  return env.body;
}

/** A `call` that failed because no reply came in time (not: nobody listening, or an error reply). */
export function timedOut(err: unknown): boolean {
  return (err as { cause?: Error } | null)?.cause?.name === 'TimeoutError';
}

/** Subscribes to events, decoding each; a malformed event is logged and dropped. */
export function listen<T>(
  nc: NatsConnection,
  subject: string,
  codec: Codec<T>,
  log: Logger,
  onEvent: (evt: T, subject: string) => void,
): Subscription {
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) {
        log.warn({ err, subject }, 'subscription error');
        return;
      }
      let evt: T;
      try {
        evt = codec.decode(msg.data);
      } catch (e) {
        log.warn({ err: e, subject: msg.subject }, 'dropped malformed event');
        return;
      }
      try {
        onEvent(evt, msg.subject);
      } catch (e) {
        log.error({ err: e, subject: msg.subject }, 'event handler failed');
      }
    },
  });
}
