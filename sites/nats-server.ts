import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, delimiter, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { authConfig, type AuthUser } from './nats-config.ts';
import { linksConfig, type LinksConfig, type SiteLinks } from './links/index.ts';
import { serverConfig, type ClusterBlock } from './server-config.ts';

const SETPRIV = '/usr/bin/setpriv';
const DEBIAN_NATS_SERVER = '/usr/sbin/nats-server';

export interface NatsServerOptions {
  /** Directory for the config, the ports file and the JetStream store. */
  dir: string;
  host?: string;
  /** -1 picks a free port. */
  port?: number;
  serverName?: string;
  bin?: string;
  /** Who may log in: the site's users, each an nkey bound to its role's permissions. */
  auth: { users: readonly AuthUser[] };
  /**
   * Bytes JetStream may store (default 1 TiB: the disk is the limit). Without it nats-server
   * takes 75% of the space free when it starts, and a site started on a nearly full disk could
   * not even hold its event stream's reservation (docs/reliability.md, "A full disk").
   */
  maxFileStore?: number;
  /** Where the config and the ports file go (default `dir`): elsewhere when `dir` is on a full disk. */
  runDir?: string;
  /** This site's peers (docs/federation.md): JetStream domain, DMZ accounts, leaf listener and remotes. */
  links?: SiteLinks;
  /** nats-server's max_payload (default 1 MiB, the same on every site; tests give a hostile peer more). */
  maxPayload?: number;
  /** Membership of a NATS cluster (sites/cluster.ts): its name, this member's route port and the routes to all. */
  cluster?: ClusterBlock;
  /**
   * Where `auth.conf` is written (default the run dir): a cluster's members share one in the
   * folder above theirs, so a reload rewrites one file and signals each member.
   */
  authDir?: string;
  /** Serve nats-server's monitoring endpoints (/varz: message counters) on a free loopback port (benchmarks). */
  monitor?: boolean;
}

/** JetStream's file store limit when none is given: 1 TiB, nats-server's own default when it cannot tell. */
export const DEFAULT_MAX_FILE_STORE = 1024 ** 4;

export interface NatsServerHandle {
  url: string;
  pid: number;
  proc: ChildProcess;
  /** The monitoring endpoint's base URL, when started with `monitor`. */
  monitorUrl?: string;
  stop(): Promise<void>;
}

/**
 * The nats-server program: NATS_SERVER_BIN, else the one on PATH, else Debian's, which the
 * package puts in /usr/sbin: not on an ordinary user's PATH.
 */
export function natsServerBin(): string {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  const onPath = (process.env.PATH ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, 'nats-server')));
  return onPath || !existsSync(DEBIAN_NATS_SERVER) ? 'nats-server' : DEBIAN_NATS_SERVER;
}

/** Starts a nats-server child with JetStream (file store under `dir/jetstream`) and waits until it listens. */
export async function startNatsServer(o: NatsServerOptions): Promise<NatsServerHandle> {
  const bin = o.bin ?? natsServerBin();
  await mkdir(join(o.dir, 'jetstream'), { recursive: true, mode: 0o700 });
  const runDir = o.runDir ?? o.dir;
  const conf = join(runDir, 'nats.conf');
  const links = o.links ? linksConfig(o.links) : undefined; // a wrong peer is refused before anything is written
  const authDir = o.authDir ?? runDir;
  await writeAuthConfig(authDir, o.auth.users, links);
  const text = serverConfig({
    listen: `${o.host ?? '127.0.0.1'}:${o.port ?? -1}`,
    serverName: o.serverName ?? 'renderbus',
    maxPayload: o.maxPayload ?? 1048576,
    storeDir: join(o.dir, 'jetstream'),
    maxFileStore: o.maxFileStore ?? DEFAULT_MAX_FILE_STORE,
    ...(links ? { domain: links.domain } : {}),
    ...(o.cluster ? { cluster: o.cluster } : {}),
    authInclude: relative(runDir, join(authDir, 'auth.conf')),
  });
  // benchmarks read nats-server's counters (/varz) on a free loopback port
  await writeFile(conf, o.monitor ? `${text}http: "127.0.0.1:-1"\n` : text, { mode: 0o600 });
  const args = ['-c', conf, '--ports_file_dir', runDir];
  // The kernel stops the server if this process dies, even by SIGKILL: no nats-server is left
  // holding the port and the store. setpriv (util-linux, Essential on Debian) sets that up and
  // execs the server in place, so the pid stays the server's.
  const proc = existsSync(SETPRIV)
    ? spawn(SETPRIV, ['--pdeathsig', 'TERM', '--', bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const spawned = once(proc, 'spawn').then(() => null);
  const exited = once(proc, 'exit');
  const failed = once(proc, 'error').then(([err]) => {
    throw new Error(`could not start ${bin}: ${(err as Error).message} (install it: apt-get install nats-server)`);
  });
  await Promise.race([spawned, failed]);
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited.catch(() => {});
      clearTimeout(t);
    }
  };
  const early = exited.then(([code]) => {
    const said = stderr.trim().split('\n').slice(-3).join(' | ');
    const hint = code === 127 ? ' (is it installed? apt-get install nats-server)' : '';
    const err = new Error(`${bin} exited with ${String(code)} before it was ready: ${said}${hint}`);
    // the same code as Node's own listeners, so a caller can pick another port (sites/port-in-use.ts)
    throw /address already in use/.test(stderr) ? Object.assign(err, { code: 'EADDRINUSE' }) : err;
  });
  try {
    const portsFile = join(runDir, `${basename(bin)}_${proc.pid}.ports`);
    const ports = await Promise.race([early, readJsonWhenPresent(portsFile, 10_000)]);
    const url = (ports as { nats: string[] }).nats[0]!;
    const monitorUrl = (ports as { monitoring?: string[] }).monitoring?.[0];
    return { url, pid: proc.pid!, proc, ...(monitorUrl ? { monitorUrl } : {}), stop: async () => { await stop(); await rm(portsFile, { force: true }); } };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Writes the server's `auth.conf` (its accounts and users); a running server reads it on reload. */
export async function writeAuthConfig(dir: string, users: readonly AuthUser[], links?: LinksConfig): Promise<void> {
  // `credentials add` on a data directory no `up` has run in yet (a studio's own nats-server): no nats/ there
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'auth.conf');
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`; // a cluster's members start at once, sharing it
  await writeFile(tmp, authConfig(users, links), { mode: 0o600 });
  await rename(tmp, path);
}

/**
 * Tells a running nats-server to read its config again (SIGHUP): new users get in, and the
 * connections of users no longer listed are closed. False when no such process runs.
 */
export function reloadNatsServer(pid: number): boolean {
  try {
    process.kill(pid, 'SIGHUP');
    return true;
  } catch {
    return false;
  }
}

async function readJsonWhenPresent(path: string, timeoutMs: number): Promise<unknown> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(await readFile(path, 'utf8'));
    } catch {
      if (Date.now() > until) throw new Error(`nats-server did not write ${path} within ${timeoutMs} ms`);
      await sleep(25);
    }
  }
}
