import { setTimeout as sleep } from 'node:timers/promises';
import { call } from '../../actors/bus/index.ts';
import { isToken, linkCodecs, PROTOCOL_MAJOR, subjects } from '../../protocol/index.ts';
import { pidAlive, readFarmFile } from '../../sites/farm-file.ts';
import {
  addPeer, decodeInvitation, encodeInvitation, ensureSite, LinkChange, linkChange, loadSiteKey, newLeafPassword, PeerRole, readSiteStore, removePeer, setPeerQuota, type SiteStore,
} from '../../sites/links/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { openFarm } from './farm-client.ts';
import { json, plural } from './format.ts';
import { dataDirOf } from './global-options.ts';
import { selfCommandLine } from './self-command.ts';
import { showSite, waitingIn } from './sites.ts';

export interface SiteOptions {
  allowUnsigned?: boolean;
  /** `site <peer> --quota SIZE`: the bytes the peer may store here. */
  quota?: string;
  json?: boolean;
}

/** The verbs of `renderbus site`; anything else is a peer to show. A peer may not be named like one. */
export const SITE_VERBS = ['invite', 'join', 'remove', 'release', 'show'] as const;

/**
 * `renderbus site invite|join|remove|<peer>`: links this site to another. These commands write
 * the site's store (`<data>/fed/site.json`) on the machine that runs `renderbus up`; a running
 * site applies a change itself (a nats-server reload, or a restart when the leaf connections change).
 */
export async function siteCommand(c: CommandContext<SiteOptions>): Promise<number> {
  const [verb, arg] = c.args;
  if (c.opts.quota !== undefined) {
    if (verb !== undefined && verb !== 'show' && (SITE_VERBS as readonly string[]).includes(verb)) throw new UsageError(`--quota goes with a peer: 'renderbus site PEER --quota SIZE', not with '${verb}'`);
    return setQuota(c, verb === 'show' ? arg : verb, c.opts.quota);
  }
  if (verb === 'invite') return invite(c, arg);
  if (verb === 'join') return join(c, arg);
  if (verb === 'remove') return remove(c, arg);
  if (verb === 'release') return release(c, arg);
  if (verb === 'show') return showSite(c, arg);
  return showSite(c, verb);
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A size as an operator writes it: `500G`, `1.5T`, `200MiB`, `1048576` (units are binary: G = GiB). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  const bytes = m ? Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`--quota '${text}' is not a size: a number of bytes, or with K, M, G or T (binary: 500G is 500 GiB)`);
  return bytes;
}

/** `renderbus site <peer> --quota SIZE`: what the peer may store here; the running intake applies it at its next bundle. */
async function setQuota(c: CommandContext<SiteOptions>, name: string | undefined, text: string): Promise<number> {
  const dataDir = dataDirOf(c.globals);
  const peer = peerName('peer', name);
  const bytes = parseSize(text);
  const store = await linkedSite(dataDir);
  if (!store.peers.some((p) => p.name === peer)) {
    throw new UsageError(`'${peer}' is not a peer of site '${store.site}' (peers: ${store.peers.map((p) => p.name).join(', ') || 'none'})`);
  }
  await setPeerQuota(dataDir, peer, bytes);
  return showSite(c, peer);
}

/** The store of a linked site, or a usage error saying how to make one. */
async function linkedSite(dataDir: string): Promise<SiteStore> {
  const s = await readSiteStore(dataDir);
  if (!s) throw new UsageError(`${dataDir} is not a linked site: run 'renderbus up --site NAME' there first (with --leaf-listen and --advertise at the site that invites)`);
  return s;
}

/** Whether the farm of this data directory runs now. */
async function running(dataDir: string): Promise<{ natsPid?: number } | null> {
  const farm = await readFarmFile(dataDir).catch(() => null);
  return farm && pidAlive(farm.pid) ? farm : null;
}

function peerName(what: string, name: string | undefined): string {
  if (name === undefined || !isToken(name)) throw new UsageError(`give the ${what}'s site name: lower-case letters, digits, '-' or '_' (got '${name ?? ''}')`);
  if ((SITE_VERBS as readonly string[]).includes(name)) throw new UsageError(`a peer may not be named '${name}': 'renderbus site ${name}' is a command`);
  return name;
}

async function invite(c: CommandContext<SiteOptions>, name: string | undefined): Promise<number> {
  const dataDir = dataDirOf(c.globals);
  const peer = peerName('peer', name);
  const store = await linkedSite(dataDir);
  if (!store.listen) {
    throw new UsageError(
      `site '${store.site}' has no leaf listener, so a peer cannot dial it: restart it with 'renderbus up --site ${store.site} --leaf-listen 0.0.0.0:7422 --advertise HOST:7422' (HOST: the name or address the peer reaches this machine by)`,
    );
  }
  if (peer === store.site) throw new UsageError(`'${peer}' is this site's own name`);
  const farm = await running(dataDir);
  const added = await addPeer(dataDir, { name: peer, role: PeerRole.Leaf, password: newLeafPassword(), ...(c.opts.allowUnsigned ? { allowUnsigned: true } : {}) });
  const key = await loadSiteKey(dataDir);
  const token = encodeInvitation({ hub: store.site, url: `nats-leaf://${store.listen.advertise}`, peer, password: added.password, hubKey: key.publicKey });
  const how = await applied(dataDir, farm, store, `${peer}'s account added`);
  const joinCmd = `renderbus --data DIR site join ${token}`;
  if (c.opts.json) {
    c.io.stdout.write(json({ site: store.site, peer, url: `nats-leaf://${store.listen.advertise}`, token, join: joinCmd, applied: how.applied }));
    return how.applied === 'pending' ? ExitCode.Failed : ExitCode.Ok;
  }
  c.io.stdout.write(`${token}\n`);
  c.io.stderr.write(
    [
      `invited '${peer}' to link to site '${store.site}' (it dials nats-leaf://${store.listen.advertise}).`,
      how.text,
      '',
      `The token above holds ${peer}'s leaf password: hand it over by a safe channel, like a credential.`,
      `At ${peer}, on the machine that runs its farm (DIR: its data directory), the operator runs:`,
      `  ${joinCmd}`,
      '',
    ].join('\n'),
  );
  return how.applied === 'pending' ? ExitCode.Failed : ExitCode.Ok;
}

/**
 * How the running site takes the change just written to its store (it applies it itself: see
 * sites/site.ts), for the operator: a reload, or a restart of its nats-server, which this waits for.
 * `farm` is read before the store was written: a quick restart must not be mistaken for none.
 */
async function applied(
  dataDir: string,
  farm: { natsPid?: number } | null,
  before: SiteStore | null,
  what: string,
): Promise<{ applied: 'not running' | 'nothing' | 'reloaded' | 'restarted' | 'pending'; text: string }> {
  const after = await readSiteStore(dataDir);
  if (!farm || !after) return { applied: 'not running', text: "The site is not running: this takes effect when it starts ('renderbus up')." };
  const change = linkChange(before, after);
  if (change === LinkChange.Nothing) return { applied: 'nothing', text: 'The running site needs no change of its NATS server for it.' };
  if (change === LinkChange.Reload) return { applied: 'reloaded', text: `The running site reloads its NATS server now (${what}); its other links stay up.` };
  // a remote we dial is in nats-server's `leafnodes` block, which 2.9.10 cannot reload: the site restarts it
  return (await natsRestarted(dataDir, farm.natsPid))
    ? { applied: 'restarted', text: `The running site restarted its NATS server (${what}); its actors reconnected by themselves.` }
    : { applied: 'pending', text: `The running site has not restarted its NATS server yet, which it must (${what}): see ${dataDir}/logs/farm.log.` };
}

async function join(c: CommandContext<SiteOptions>, token: string | undefined): Promise<number> {
  if (token === undefined || token.trim() === '') throw new UsageError("give the invitation token ('renderbus site invite PEER' at the inviting site prints it)");
  const dataDir = dataDirOf(c.globals);
  const before = await readSiteStore(dataDir);
  // a data directory that is no site yet becomes the site the invitation names (or --site)
  const site = before?.site ?? c.globals.site;
  let inv;
  try {
    inv = decodeInvitation(token, site !== undefined ? { site } : {});
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
  const farm = await running(dataDir);
  if (!before) await ensureSite(dataDir, inv.peer);
  const existing = (before?.peers ?? []).find((p) => p.name === inv.hub);
  if (existing) throw new UsageError(`'${inv.hub}' is already a peer of site '${inv.peer}': 'renderbus site remove ${inv.hub}' first to join it anew`);
  await addPeer(dataDir, { name: inv.hub, role: PeerRole.Hub, url: inv.url, password: inv.password, publicKey: inv.hubKey, ...(c.opts.allowUnsigned ? { allowUnsigned: true } : {}) });
  const lines = [`site '${inv.peer}' now links to '${inv.hub}' (${inv.url}); its site key is on record.`];
  let how: Awaited<ReturnType<typeof applied>> | { applied: 'not linked'; text: string };
  if (farm && !before) {
    how = { applied: 'not linked', text: `The farm running in ${dataDir} was not started as a site: stop it and start it again as '${selfCommandLine(['--data', dataDir, '--site', inv.peer, 'up'])}'.` };
  } else if (farm) {
    how = await applied(dataDir, farm, before, `to dial '${inv.hub}'`);
  } else {
    how = { applied: 'not running', text: `Start the site to open the link: ${selfCommandLine(['--data', dataDir, '--site', inv.peer, 'up'])}` };
  }
  lines.push(how.text, `Check the link: ${selfCommandLine(['--data', dataDir, 'sites'])}`);
  if (c.opts.json) c.io.stdout.write(json({ site: inv.peer, hub: inv.hub, url: inv.url, applied: how.applied }));
  else c.io.stderr.write(`${lines.join('\n')}\n`);
  return how.applied === 'pending' ? ExitCode.Failed : ExitCode.Ok;
}

/** Waits (up to 20 s) for farm.json to name another nats-server: the running site restarted it. */
async function natsRestarted(dataDir: string, pid: number | undefined): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const farm = await readFarmFile(dataDir).catch(() => null);
    if (farm?.natsPid !== undefined && farm.natsPid !== pid) return true;
    await sleep(100);
  }
  return false;
}

async function remove(c: CommandContext<SiteOptions>, name: string | undefined): Promise<number> {
  const dataDir = dataDirOf(c.globals);
  const peer = peerName('peer', name);
  const store = await linkedSite(dataDir);
  const farm = await running(dataDir);
  if (!(await removePeer(dataDir, peer))) {
    throw new UsageError(`'${peer}' is not a peer of site '${store.site}' (peers: ${store.peers.map((p) => p.name).join(', ') || 'none'})`);
  }
  const how = await applied(dataDir, farm, store, `no link to '${peer}' any more`);
  if (c.opts.json) c.io.stdout.write(json({ site: store.site, removed: peer, applied: how.applied }));
  else c.io.stderr.write(`removed peer '${peer}' of site '${store.site}'. ${how.text} Its hot folders and stored content are kept.\n`);
  return how.applied === 'pending' ? ExitCode.Failed : ExitCode.Ok;
}

/**
 * `renderbus site release <peer>`: lifts the quarantine the link's watchdog put on a peer (asks
 * the running link service on `link.release`; operators only). The inbox is reset past the
 * message it could not take, and the intake takes the peer's held bundles at its next look.
 */
async function release(c: CommandContext<SiteOptions>, name: string | undefined): Promise<number> {
  const dataDir = dataDirOf(c.globals);
  const peer = peerName('peer', name);
  const store = await linkedSite(dataDir);
  if (!store.peers.some((p) => p.name === peer)) {
    throw new UsageError(`'${peer}' is not a peer of site '${store.site}' (peers: ${store.peers.map((p) => p.name).join(', ') || 'none'})`);
  }
  const fc = await openFarm(c.globals, 'renderbus-site-release');
  let body;
  try {
    body = await call(fc.nc, subjects.linkRelease(store.site), linkCodecs.releaseRequest, { v: PROTOCOL_MAJOR, peer }, linkCodecs.releaseReply, { timeoutMs: 5_000 });
  } finally {
    await fc.close();
  }
  const waiting = await waitingIn(dataDir, peer);
  if (c.opts.json) {
    c.io.stdout.write(json({ site: store.site, ...body, waiting }));
    return ExitCode.Ok;
  }
  c.io.stdout.write(
    body.released
      ? `released ${peer}'s quarantine: its link resets its inbox past the message it could not take, and the intake takes the ${plural(waiting, 'bundle')} waiting in incoming/${peer}/.\n`
      : `${peer} is not quarantined (its link is ${body.was}): nothing to release.\n`,
  );
  return ExitCode.Ok;
}
