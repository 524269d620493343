import { readdir } from 'node:fs/promises';
import { call } from '../../actors/bus/index.ts';
import { codecFor, LinkState, LinkStatusReply, LinkStatusRequest, PROTOCOL_MAJOR, subjects, type LinkStatus } from '../../protocol/index.ts';
import { hotFolderDirs, isCompleteBundle } from '../../sites/hotfolders/index.ts';
import { holdReason, humanBytes, peerUse } from '../../sites/intake/index.ts';
import { DEFAULT_PEER_QUOTA_BYTES, readSiteStore, type SiteStore, type StoredPeer } from '../../sites/links/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { openFarm } from './farm-client.ts';
import { ago, dateTime, duration, json, plural, table } from './format.ts';
import { dataDirOf } from './global-options.ts';

const statusRequest = codecFor(LinkStatusRequest);
const statusReply = codecFor(LinkStatusReply);

/** What `renderbus sites` says of a link when the link service gave no answer. */
export const NO_ANSWER = 'unknown (the link service did not answer)';

/** One stored peer merged with what the link service says of it (never its password or our DMZ seed). */
export interface SiteRow {
  name: string;
  role: StoredPeer['role'];
  url?: string;
  publicKey?: string;
  allowUnsigned: boolean;
  addedAt: number;
  /** The link's state, or why it is unknown. */
  state: string;
  link: LinkStatus | null;
}

/**
 * The stored peers with their links' status (pure): `links` is the link service's answer, or null
 * when it gave none. A peer the answer does not name is unknown too.
 */
export function mergeLinks(store: SiteStore, links: readonly LinkStatus[] | null): SiteRow[] {
  return store.peers.map((p) => {
    const link = links?.find((l) => l.peer === p.name) ?? null;
    const state = link ? link.state : links === null ? NO_ANSWER : 'unknown (the link service does not know this peer yet)';
    return {
      name: p.name,
      role: p.role,
      ...(p.url !== undefined ? { url: p.url } : {}),
      ...(p.publicKey !== undefined ? { publicKey: p.publicKey } : {}),
      allowUnsigned: p.allowUnsigned === true,
      addedAt: p.addedAt,
      state,
      link,
    };
  });
}

/** Asks the site's link service for its links; null when nobody answers (or the farm is not reachable). */
async function askLinks(c: CommandContext<{ json?: boolean }>, site: string, peer?: string): Promise<{ links: LinkStatus[] | null; why?: string }> {
  let fc;
  try {
    fc = await openFarm(c.globals, 'renderbus-sites');
  } catch (err) {
    return { links: null, why: (err as Error).message };
  }
  try {
    const body = await call(fc.nc, subjects.linkStatus(site), statusRequest, { v: PROTOCOL_MAJOR, ...(peer ? { peer } : {}) }, statusReply, { timeoutMs: 3_000 });
    return { links: body.links };
  } catch (err) {
    return { links: null, why: (err as Error).message };
  } finally {
    await fc.close();
  }
}

/** Bundles waiting in `incoming/<peer>/` for the intake (held, or not taken yet). */
export async function waitingIn(dataDir: string, peer: string): Promise<number> {
  const names = await readdir(hotFolderDirs(dataDir, peer).incoming).catch(() => [] as string[]);
  return names.filter(isCompleteBundle).length;
}

const backlog = (b: { bundles: number; bytes: number }) => (b.bundles === 0 ? '-' : `${plural(b.bundles, 'bundle')}, ${mib(b.bytes)}`);
const mib = (bytes: number) => (bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);

async function linkedSite(c: CommandContext<{ json?: boolean }>): Promise<SiteStore> {
  const dataDir = dataDirOf(c.globals);
  const s = await readSiteStore(dataDir);
  if (!s) throw new UsageError(`${dataDir} is not a linked site: it has no peers ('renderbus up --site NAME', then 'renderbus site invite' or 'site join')`);
  return s;
}

/** `renderbus sites`: every peer of the site, its link's state, round trip and what waits either way. */
export async function sitesCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const store = await linkedSite(c);
  const asked = await askLinks(c, store.site);
  const rows = mergeLinks(store, asked.links);
  if (c.opts.json) {
    c.io.stdout.write(json({ site: store.site, ...(store.listen ? { listen: store.listen } : {}), answered: asked.links !== null, peers: rows }));
    if (asked.why) c.io.stderr.write(`the link service of site '${store.site}' did not answer: ${asked.why}\n`);
    return ExitCode.Ok;
  }
  if (rows.length === 0) {
    c.io.stdout.write(`site '${store.site}' has no peers yet (${store.listen ? "'renderbus site invite PEER'" : "'renderbus site join TOKEN'"})\n`);
    return ExitCode.Ok;
  }
  c.io.stdout.write(
    table(
      ['PEER', 'ROLE', 'STATE', 'SINCE', 'RTT', 'WAITING OUT', 'WAITING IN'],
      rows.map((r) => [
        r.name,
        r.role === 'hub' ? 'hub (we dial it)' : 'leaf (dials us)',
        r.state,
        r.link ? ago(r.link.since) : '-',
        r.link?.rttMs !== undefined ? duration(r.link.rttMs) : '-',
        r.link ? backlog(r.link.outgoing) : '-',
        r.link ? backlog(r.link.incoming) : '-',
      ]),
    ),
  );
  if (asked.links === null) c.io.stderr.write(`the link service of site '${store.site}' did not answer${asked.why ? `: ${asked.why}` : ''}\n`);
  return ExitCode.Ok;
}

/** `renderbus site <peer>`: one peer in full (never its password nor our DMZ seed). */
export async function showSite(c: CommandContext<{ json?: boolean }>, name: string | undefined): Promise<number> {
  const store = await linkedSite(c);
  if (name === undefined) throw new UsageError('give a peer (renderbus sites lists them), or invite, join or remove');
  if (!store.peers.some((p) => p.name === name)) {
    throw new UsageError(`'${name}' is not a peer of site '${store.site}' (peers: ${store.peers.map((p) => p.name).join(', ') || 'none'})`);
  }
  const asked = await askLinks(c, store.site, name);
  const row = mergeLinks(store, asked.links).find((r) => r.name === name)!;
  const waiting = await waitingIn(dataDirOf(c.globals), name);
  // the intake's own rule (holdReason); the link's state is known only when the link service answered
  const held = holdReason(name, { quarantined: row.link?.state === LinkState.Quarantined, keyKnown: row.publicKey !== undefined, allowUnsigned: row.allowUnsigned });
  // what the peer stores here (its content store and job trees) against its quota
  const quotaBytes = store.peers.find((p) => p.name === name)?.quotaBytes ?? DEFAULT_PEER_QUOTA_BYTES;
  const { used } = await peerUse(dataDirOf(c.globals), name);
  if (c.opts.json) {
    c.io.stdout.write(json({ site: store.site, answered: asked.links !== null, ...row, storage: { used, quota: quotaBytes }, intake: { waiting, ...(held ? { held } : {}) } }));
    return ExitCode.Ok;
  }
  const l = row.link;
  const lines: [string, string][] = [
    ['peer', row.name],
    ['role', row.role === 'hub' ? `hub: this site dials ${row.url ?? '?'}` : `leaf: it dials this site${store.listen ? ` (${store.listen.advertise})` : ''}`],
    ['linked since', dateTime(row.addedAt)],
    ['site key', row.publicKey ?? 'not known yet (recorded from the link\'s first hello)'],
    ['unsigned bundles', row.allowUnsigned ? 'accepted' : 'refused'],
    ['state', `${row.state}${l ? ` since ${dateTime(l.since)}` : ''}${l?.reason ? `: ${l.reason}` : ''}`],
    ['stored here', `${humanBytes(used)} of its quota of ${humanBytes(quotaBytes)} (${quotaBytes === 0 ? 'it may store nothing' : `${((used / quotaBytes) * 100).toFixed(1)} %`})`],
    ['waiting intake', `${waiting === 0 ? 'none' : `${plural(waiting, 'bundle')} in incoming/${name}/`}${held ? ` (held: ${held})` : ''}`],
  ];
  if (l) {
    lines.push(
      ['round trip', l.rttMs !== undefined ? duration(l.rttMs) : '-'],
      ['last hello', l.lastHelloAt !== undefined ? ago(l.lastHelloAt) : '-'],
      ['waiting out', backlog(l.outgoing)],
      ['waiting in', backlog(l.incoming)],
      ['sending', l.sending ? `${l.sending.bundleId}: ${mib(l.sending.bytesSent)} of ${mib(l.sending.bytesTotal)}` : '-'],
      ['bytes out/in', `${mib(l.bytesOut)} / ${mib(l.bytesIn)}`],
    );
  }
  c.io.stdout.write(lines.map(([k, v]) => `${k.padEnd(17)}${v}\n`).join(''));
  if (asked.links === null) c.io.stderr.write(`the link service of site '${store.site}' did not answer${asked.why ? `: ${asked.why}` : ''}\n`);
  return ExitCode.Ok;
}
