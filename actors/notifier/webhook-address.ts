import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { FarmError } from '../../protocol/errors.ts';

/**
 * Which addresses a webhook may reach. A job's author picks the URL, so without this a job could
 * make the farm POST to the farm itself (the monitor's API on 127.0.0.1, the NATS port), to a
 * cloud's metadata service (169.254.169.254) or to anything else only the farm's machine reaches.
 * Refused unless the site allows them: loopback, link-local, unspecified, multicast and broadcast
 * addresses, and the addresses of this machine's own interfaces. Private ranges (10/8,
 * 192.168/16, fd00::/8) are allowed: a studio's receivers live there.
 */

/** One `--webhook-allow` entry: an address or a CIDR block, and maybe one port. */
export interface WebhookAllowEntry {
  text: string;
  list: BlockList;
  port?: number;
}

const FORBIDDEN: [reason: string, blocks: [string, number, 'ipv4' | 'ipv6'][]][] = [
  ['a loopback address', [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']]],
  ['a link-local address', [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']]],
  ['an unspecified address', [['0.0.0.0', 8, 'ipv4'], ['::', 128, 'ipv6']]],
  ['a multicast address', [['224.0.0.0', 4, 'ipv4'], ['ff00::', 8, 'ipv6']]],
  ['the broadcast address', [['255.255.255.255', 32, 'ipv4']]],
];
const forbidden = FORBIDDEN.map(([reason, blocks]) => {
  const list = new BlockList();
  for (const [net, prefix, type] of blocks) list.addSubnet(net, prefix, type);
  return { reason, list };
});

/** An address as compared here: lower-case, without a zone (`%eth0`), IPv4-mapped IPv6 as IPv4. */
export function plainAddress(address: string): string {
  return address.toLowerCase().replace(/%.*$/, '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

const family = (a: string): 'ipv4' | 'ipv6' => (isIP(a) === 4 ? 'ipv4' : 'ipv6');

/** Why an address is refused (`a loopback address`, `an address of this machine (eth0)`), or null. */
export function refusedAddress(address: string, own: Map<string, string> = ownAddresses()): string | null {
  const a = plainAddress(address);
  if (isIP(a) === 0) return 'not an IP address';
  for (const f of forbidden) if (f.list.check(a, family(a))) return f.reason;
  const iface = own.get(a);
  return iface !== undefined ? `an address of this machine (${iface})` : null;
}

/** This machine's interface addresses, each with its interface's name. */
export function ownAddresses(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, list] of Object.entries(networkInterfaces())) for (const a of list ?? []) out.set(plainAddress(a.address), name);
  return out;
}

/**
 * Parses allow entries: `127.0.0.1`, `127.0.0.1:9000`, `[::1]:9000`, `10.0.0.0/8`,
 * `192.168.1.0/24:8443`. Throws RB_BAD_ARGUMENT naming the entry.
 */
export function parseWebhookAllow(entries: readonly string[]): WebhookAllowEntry[] {
  return entries.map((text) => {
    const m = /^\[([0-9a-fA-F:.]+)\](?:\/(\d{1,3}))?(?::(\d{1,5}))?$/.exec(text) ?? /^([0-9.]+)(?:\/(\d{1,2}))?(?::(\d{1,5}))?$/.exec(text) ?? /^([0-9a-fA-F:]*:[0-9a-fA-F:.]*)(?:\/(\d{1,3}))?()$/.exec(text);
    const bad = (why: string) => new FarmError('RB_BAD_ARGUMENT', `webhook allow entry '${text}': ${why} (e.g. 127.0.0.1:9000, 10.0.0.0/8, [::1]:9000)`);
    if (!m) throw bad('not an address, a CIDR block or either with :port');
    const address = plainAddress(m[1]!);
    if (isIP(address) === 0) throw bad(`'${m[1]}' is not an IP address`);
    const max = isIP(address) === 4 ? 32 : 128;
    const prefix = m[2] !== undefined ? Number(m[2]) : max;
    if (prefix > max) throw bad(`/${prefix} is longer than the address (${max} bits)`);
    const list = new BlockList();
    list.addSubnet(address, prefix, family(address));
    const entry: WebhookAllowEntry = { text, list };
    if (m[3]) {
      const port = Number(m[3]);
      if (port < 1 || port > 65535) throw bad(`port ${port} is out of range (1-65535)`);
      entry.port = port;
    }
    return entry;
  });
}

/** Whether an allow entry covers this address and port. */
export function isAllowed(allow: readonly WebhookAllowEntry[], address: string, port: number): boolean {
  const a = plainAddress(address);
  return allow.some((e) => (e.port === undefined || e.port === port) && e.list.check(a, family(a)));
}
