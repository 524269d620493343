import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { ErrorCode } from '../../protocol/index.ts';

/**
 * Who may ask the monitor's HTTP server what. Three checks, before any route runs:
 * - `Host` must name this server (loopback names, this machine's addresses, or names the operator
 *   listed), with its port: a DNS-rebinding page reaches us under the attacker's own name.
 * - Anything but GET/HEAD (an action) needs the access token in a header, which a cross-site form
 *   cannot set; a cookie never counts for an action.
 * - A peer that is not on loopback needs the token (header, `Authorization: Bearer`, or the
 *   read-only cookie the page gets from `/api/access`) for everything but public routes (the
 *   page's own files, the same for every farm).
 */

/** The header that carries the access token. */
export const TOKEN_HEADER = 'x-renderbus-token';
/** The cookie that lets a browser on another machine read (EventSource and images send no headers). */
export const READ_COOKIE = 'rb_read';

export interface AccessPolicy {
  /** The access token; without one, actions and reads from other machines are refused. */
  token?: string;
  /** More `Host` names the server answers to (`farm.studio.example`, or `name:port` for one port). */
  hosts?: readonly string[];
}

/** What one request shows of itself, for the check. */
export interface AccessRequest {
  method: string;
  host: string | undefined;
  remoteAddress: string | undefined;
  /** The token from `x-renderbus-token` or `Authorization: Bearer`. */
  headerToken: string | undefined;
  /** The read cookie's value. */
  readCookie: string | undefined;
  /** A route anyone who passes the Host check may read (the page's files). */
  isPublic: boolean;
}

/** What the check concluded: the request goes on (and whether its token was good), or is refused. */
export type AccessVerdict =
  | { ok: true; token: boolean; loopback: boolean }
  | { ok: false; status: 401 | 421; code: Extract<ErrorCode, 'RB_HOST_REFUSED' | 'RB_TOKEN_REQUIRED'>; message: string };

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '::1']);

export function checkAccess(r: AccessRequest, policy: AccessPolicy, port: number): AccessVerdict {
  if (!hostAllowed(r.host, port, policy.hosts ?? [])) {
    return { ok: false, status: 421, code: 'RB_HOST_REFUSED', message: `Host '${r.host ?? ''}' is not this monitor's (use 127.0.0.1:${port}, or start the monitor with --monitor-host NAME for a name that reaches it)` };
  }
  const loopback = isLoopbackAddress(r.remoteAddress);
  const token = policy.token;
  if (r.headerToken !== undefined && (token === undefined || !sameSecret(r.headerToken, token))) {
    return { ok: false, status: 401, code: 'RB_TOKEN_REQUIRED', message: 'the access token is wrong (renderbus up prints the right one, and keeps it in <data>/monitor-token)' };
  }
  const withToken = r.headerToken !== undefined;
  const write = r.method !== 'GET' && r.method !== 'HEAD';
  if (write && !withToken) {
    return { ok: false, status: 401, code: 'RB_TOKEN_REQUIRED', message: `actions need the monitor's access token in the ${TOKEN_HEADER} header (open the URL renderbus up prints, which ends in #token=...)` };
  }
  if (withToken || r.isPublic || loopback) return { ok: true, token: withToken, loopback };
  if (token !== undefined && r.readCookie !== undefined && sameSecret(r.readCookie, readKey(token))) return { ok: true, token: false, loopback };
  return { ok: false, status: 401, code: 'RB_TOKEN_REQUIRED', message: `from another machine the monitor needs its access token (${TOKEN_HEADER} or Authorization: Bearer; in a browser, the URL renderbus up prints)` };
}

/** The read cookie's value for a token: derived, so the cookie cannot be replayed as the token. */
export function readKey(token: string): string {
  return createHash('sha256').update(`renderbus-read:${token}`).digest('base64url');
}

/** Compares two secrets in constant time (whatever their lengths). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 (`::ffff:127.0.0.1`). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/**
 * Whether a `Host` header names this server: a loopback name or one of this machine's addresses
 * with the server's port, or a listed name (any port, unless the entry gives one).
 */
export function hostAllowed(host: string | undefined, port: number, extra: readonly string[]): boolean {
  const parsed = splitHost(host);
  if (!parsed) return false;
  const name = parsed.name;
  const given = parsed.port ?? 80;
  for (const e of extra) {
    const want = splitHost(e);
    if (want && want.name === name && (want.port === undefined || want.port === given)) return true;
  }
  if (given !== port) return false;
  return LOOPBACK_NAMES.has(name) || (isIP(name) !== 0 && ownAddresses().has(name));
}

/** `name[:port]`, `[v6][:port]` or a bare IPv6 address, lower-cased; null when it is none of these. */
export function splitHost(host: string | undefined): { name: string; port?: number } | null {
  if (!host) return null;
  const h = host.trim().toLowerCase();
  if (isIP(h) === 6) return { name: h };
  const m = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(h) ?? /^([a-z0-9._-]+)(?::(\d{1,5}))?$/.exec(h);
  if (!m) return null;
  return m[2] !== undefined ? { name: m[1]!, port: Number(m[2]) } : { name: m[1]! };
}

function ownAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address.toLowerCase());
  return out;
}
