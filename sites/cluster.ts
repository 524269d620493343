import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { loginOptions } from '../actors/bus/index.ts';
import { FarmError, type Credentials } from '../protocol/index.ts';
import type { AuthUser } from './nats-config.ts';
import { reloadNatsServer, startNatsServer, writeAuthConfig, type NatsServerHandle } from './nats-server.ts';

/** The cluster sizes `renderbus up --cluster` runs: 1 (no cluster) or 3 (R3 survives one lost member). */
export const CLUSTER_SIZES: readonly number[] = [1, 3];

export interface ClusterOptions {
  /** `<data>/nats`: member i keeps its config and store in `n<i>`; the shared `auth.conf` and route secret stay here. */
  dir: string;
  size: number;
  /** Address the client and route listeners bind (default 127.0.0.1). */
  host?: string;
  /** The members' client ports (default: free ones). */
  ports?: readonly number[];
  /** The cluster's name (default `renderbus`). */
  name?: string;
  /** Who may log in: the same users on every member. */
  auth: { users: readonly AuthUser[] };
  /** A credential allowed JetStream's API (a scheduler's): the cluster is ready once its meta leader answers. */
  probe: Credentials;
  maxFileStore?: number;
  /** How long the members may take to elect a JetStream meta leader (default 30 s). */
  readyTimeoutMs?: number;
}

export interface ClusterNode {
  /** `n1`… : its server_name, which JetStream names its peers by (stream info's `cluster.leader`). */
  name: string;
  url: string;
  pid: number;
  /** Its route port (the others dial it). */
  routePort: number;
}

export interface ClusterHandle {
  /** Every member's client URL, in member order: what each actor is given. */
  servers: string[];
  /** The members as they run now (a restarted one has a new pid). */
  nodes(): ClusterNode[];
  /** Milliseconds from the first start until JetStream had a meta leader. */
  readyMs: number;
  /** Kills member `i` (0-based) with SIGKILL, as a crash would. */
  kill(i: number): Promise<void>;
  /** Starts member `i` again: the same ports, the same store. */
  restart(i: number): Promise<void>;
  /** Rewrites the shared `auth.conf` and has every running member read it again. */
  reloadAuth(users: readonly AuthUser[]): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A NATS cluster on this machine (`renderbus up --cluster 3`, tests, the chaos driver): `size`
 * nats-servers with JetStream, each with its own store, joined by authenticated routes, sharing
 * one `auth.conf`. Resolves once JetStream has elected its meta leader (before that no stream
 * can be made). Each member dies with this process, as a single server does.
 */
export async function startCluster(o: ClusterOptions): Promise<ClusterHandle> {
  if (!Number.isInteger(o.size) || o.size < 3) throw new FarmError('RB_BAD_ARGUMENT', `a cluster of ${o.size} cannot elect a leader after losing a member: give 3`);
  const host = o.host ?? '127.0.0.1';
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const password = await routeSecret(o.dir);
  const routePorts: number[] = [];
  for (let i = 0; i < o.size; i++) routePorts.push(await freePort(host));
  const name = o.name ?? 'renderbus';
  const cluster = { name, user: 'route', password, routes: routePorts.map((p) => `${host}:${p}`) };
  const clientPorts = o.ports ? [...o.ports] : Array.from({ length: o.size }, () => -1);
  const handles: (NatsServerHandle | null)[] = Array.from({ length: o.size }, () => null);
  const startNode = async (i: number): Promise<NatsServerHandle> => {
    const dir = join(o.dir, `n${i + 1}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return startNatsServer({
      dir, host, port: clientPorts[i]!, serverName: `n${i + 1}`, auth: o.auth, authDir: o.dir,
      cluster: { ...cluster, listen: `${host}:${routePorts[i]!}` },
      ...(o.maxFileStore !== undefined ? { maxFileStore: o.maxFileStore } : {}),
    });
  };
  const stopAll = async () => {
    await Promise.all(handles.map((h) => h?.stop()));
  };
  const t0 = Date.now();
  // all at once: a member that starts alone waits out an election timeout before it campaigns
  const started = await Promise.allSettled(Array.from({ length: o.size }, (_, i) => startNode(i)));
  started.forEach((r, i) => {
    if (r.status === 'fulfilled') {
      handles[i] = r.value;
      clientPorts[i] = Number(new URL(r.value.url).port);
    }
  });
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }
  const servers = handles.map((h) => h!.url);
  try {
    await untilMetaLeader(servers, o.probe, o.readyTimeoutMs ?? 30_000);
  } catch (err) {
    await stopAll();
    throw err;
  }
  const readyMs = Date.now() - t0;
  const member = (i: number): NatsServerHandle => {
    const h = handles[i];
    if (i < 0 || i >= o.size) throw new FarmError('RB_BAD_ARGUMENT', `the cluster has members 0 to ${o.size - 1}, not ${i}`);
    if (!h) throw new FarmError('RB_BAD_ARGUMENT', `member ${i} is not running`);
    return h;
  };
  return {
    servers,
    readyMs,
    nodes: () => handles.flatMap((h, i) => (h ? [{ name: `n${i + 1}`, url: h.url, pid: h.pid, routePort: routePorts[i]! }] : [])),
    kill: async (i) => {
      const h = member(i);
      handles[i] = null;
      const gone = new Promise<void>((resolve) => h.proc.once('exit', () => resolve()));
      if (h.proc.exitCode === null && h.proc.signalCode === null) {
        h.proc.kill('SIGKILL');
        await gone;
      }
    },
    restart: async (i) => {
      if (handles[i]) await member(i).stop();
      handles[i] = null;
      handles[i] = await startNode(i);
    },
    reloadAuth: async (users) => {
      await writeAuthConfig(o.dir, users);
      for (const h of handles) if (h) reloadNatsServer(h.pid);
    },
    stop: stopAll,
  };
}

/** Waits until JetStream answers an account-info request: only its meta leader does. */
async function untilMetaLeader(servers: string[], probe: Credentials, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  const nc = await connect({ servers, ...loginOptions(probe), maxReconnectAttempts: -1, reconnectTimeWait: 100, waitOnFirstConnect: true, timeout: timeoutMs });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 1_000, checkAPI: false });
    let last: unknown;
    while (Date.now() < until) {
      try {
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        if (/permissions violation/i.test((err as Error).message)) throw err; // the probe's credential may not ask: waiting will not help
        last = err;
        await sleep(50);
      }
    }
    throw new FarmError('RB_SCHEDULER_UNAVAILABLE', `the NATS cluster (${servers.join(', ')}) elected no JetStream leader within ${timeoutMs} ms: ${String((last as Error)?.message ?? last)}`);
  } finally {
    await nc.close();
  }
}

/**
 * The password the members' routes share (`<dir>/cluster.secret`, 0600): made once, so a
 * member restarted later still gets in. Hex: it goes into route URLs unescaped.
 */
export async function routeSecret(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'cluster.secret');
  const had = await readFile(path, 'utf8').then((s) => s.trim(), () => '');
  if (/^[0-9a-f]{32,}$/.test(had)) return had;
  const secret = randomBytes(24).toString('hex');
  await writeFile(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** A port free on `host` now (the OS picks it; a race with another process is unlikely and fails loudly). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}
