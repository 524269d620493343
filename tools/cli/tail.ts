import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { decodeAny, subjects } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { openFarm } from './farm-client.ts';
import { clock, duration, paint, type Paint } from './format.ts';
import { untilSignal } from './signals.ts';

/**
 * `renderbus tail [FILTER]`: prints every message on a subject filter (default
 * `rb.<site>.evt.>`), decoding MessagePack, one line each, until Ctrl-C.
 */
export async function tailCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const given = c.args[0];
  if (given !== undefined) checkFilter(given);
  // a tail watches the farm through its restarts: a nats-server that goes away is waited for
  const fc = await openFarm(c.globals, 'renderbus-tail', { reconnect: true });
  const filter = given ?? subjects.allEvents(fc.site);
  const p = paint(c.io.stdout);
  fc.nc.subscribe(filter, {
    callback: (err, msg) => {
      if (err) {
        c.io.stderr.write(`subscription error: ${err.message}\n`);
        return;
      }
      c.io.stdout.write(c.opts.json ? `${tailJson(msg.subject, msg.data)}\n` : `${tailLine(msg, p)}\n`);
    },
  });
  await fc.nc.flush(); // the server has the subscription: what is published from now on is shown
  if (!c.opts.json) c.io.stderr.write(`tailing ${filter} on ${fc.url} (Ctrl-C to stop)\n`);
  void reportOutages(fc.nc, fc.url, c.io.stderr);
  const sig = untilSignal();
  const why = await Promise.race([sig.signal, fc.nc.closed().then(() => 'closed' as const)]);
  sig.dispose();
  if (why === 'closed') {
    c.io.stderr.write(`lost the connection to ${fc.url}\n`);
    return ExitCode.Failed;
  }
  await fc.close();
  return ExitCode.Ok;
}

/** Says on stderr when the connection drops and when it is back (the subscription comes back with it). */
async function reportOutages(nc: NatsConnection, url: string, err: NodeJS.WritableStream): Promise<void> {
  let down = false;
  for await (const s of nc.status()) {
    if (s.type === 'disconnect' && !down) {
      down = true;
      err.write(`lost the connection to ${url}: reconnecting (messages sent meanwhile are not shown)\n`);
    } else if (s.type === 'reconnect' && down) {
      down = false;
      err.write(`reconnected to ${url}\n`);
    }
  }
}

/** A NATS subject filter: dot-separated tokens, `*` a whole token, `>` only the last one. */
export function checkFilter(filter: string): string {
  const tokens = filter.split('.');
  const bad = tokens.findIndex((t, i) => t === '' || /\s/.test(t) || (t.includes('>') && (t !== '>' || i !== tokens.length - 1)) || (t.includes('*') && t !== '*'));
  if (bad >= 0) {
    throw new UsageError(`subject filter '${filter}' is not valid: tokens are separated by '.', '*' matches one whole token and '>' ends the filter (e.g. 'rb.studio.evt.>')`);
  }
  return filter;
}

function tailLine(msg: Msg, p: Paint): string {
  let data: unknown;
  try {
    data = decodeAny(msg.data);
  } catch {
    return `${clock(Date.now())} ${p.cyan(msg.subject)} ${p.dim(rawText(msg.data))}`;
  }
  const at = isObject(data) && typeof data.at === 'number' ? data.at : Date.now();
  const event = isObject(data) && typeof data.event === 'string' ? data.event : '';
  const colourEvent = event === 'failed' ? p.red : event === 'done' ? p.green : (s: string) => s;
  return `${clock(at)} ${p.cyan(msg.subject)} ${colourEvent(summarize(data))}`;
}

/** `{subject, data}`; binary values become base64, a non-MessagePack payload `{subject, text|base64}`. */
export function tailJson(subject: string, bytes: Uint8Array): string {
  let data: unknown;
  try {
    data = decodeAny(bytes);
  } catch {
    const text = Buffer.from(bytes).toString('utf8');
    return JSON.stringify(isPrintable(text) ? { subject, text } : { subject, base64: Buffer.from(bytes).toString('base64') });
  }
  // the replacer sees a Buffer after its toJSON(): look at the holder's own value instead
  return JSON.stringify({ subject, data }, function (this: Record<string, unknown>, k: string, v: unknown) {
    const own = this[k];
    return own instanceof Uint8Array ? { base64: Buffer.from(own).toString('base64') } : v;
  });
}

const FIRST = ['event', 'jobId', 'frame', 'host', 'slot', 'attempt', 'state', 'percent', 'job', 'error', 'reason'];

/** A compact one-line summary of any decoded message: `key=value` pairs, most telling first. */
export function summarize(data: unknown): string {
  if (!isObject(data)) return scalar(data);
  const keys = Object.keys(data).filter((k) => k !== 'v' && k !== 'at');
  keys.sort((a, b) => rank(a) - rank(b));
  const parts: string[] = [];
  for (const k of keys) {
    const v = data[k];
    if (v === undefined) continue;
    if (k === 'event' && typeof v === 'string') parts.push(v);
    else parts.push(`${k}=${compact(v)}`);
  }
  const line = parts.join(' ');
  return line.length > 240 ? `${line.slice(0, 239)}…` : line;
}

function rank(k: string): number {
  const i = FIRST.indexOf(k);
  return i < 0 ? FIRST.length : i;
}

function compact(v: unknown): string {
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (Array.isArray(v)) return v.length <= 4 && v.every((x) => typeof x !== 'object' || x === null) ? `[${v.map(scalar).join(',')}]` : `[${v.length}]`;
  if (isObject(v)) {
    const counts = v.counts;
    if (typeof v.state === 'string' && isObject(counts)) return `${v.state}:${String(counts.done)}/${String(counts.total)}`; // a job summary
    if (typeof v.index === 'number' && typeof v.state === 'string') return `${v.index}:${v.state}`; // a slot
    if (typeof v.code === 'string' && typeof v.message === 'string') return `${v.code}:${scalar(v.message)}`; // an error
    if (typeof v.wallMs === 'number') return duration(v.wallMs); // task stats
    return `{${Object.keys(v).slice(0, 5).join(',')}${Object.keys(v).length > 5 ? ',…' : ''}}`;
  }
  return scalar(v);
}

function scalar(v: unknown): string {
  if (typeof v === 'string') {
    const s = v.length > 80 ? `${v.slice(0, 79)}…` : v;
    return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
  }
  if (typeof v === 'number' && !Number.isInteger(v)) return String(Math.round(v * 100) / 100);
  return String(v);
}

function rawText(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('utf8');
  return isPrintable(text) ? `not msgpack: ${scalar(text)}` : `not msgpack: ${bytes.length} bytes`;
}

function isPrintable(s: string): boolean {
  return !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(s);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
