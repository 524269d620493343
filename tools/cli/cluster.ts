import { join } from 'node:path';
import { routeSecret } from '../../sites/cluster.ts';
import { natsDir } from '../../sites/auth/index.ts';
import { DEFAULT_MAX_FILE_STORE } from '../../sites/nats-server.ts';
import { serverConfig } from '../../sites/server-config.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { dataDirOf } from './global-options.ts';
import { parseCount, parseToken } from './option-values.ts';

export interface ClusterConfigOptions {
  node?: string;
  routes?: string;
  listen?: string;
  store?: string;
  name?: string;
}

const HOST_PORT = /^[A-Za-z0-9.[\]:-]+:\d{1,5}$/;

/**
 * `renderbus cluster config --node N --routes a:6222,b:6222,c:6222`: the nats.conf of member N
 * of a studio's own cluster (docs/cluster.md), printed. Its route password is the farm's
 * (`<data>/nats/cluster.secret`, made on first use): run it on one machine for every member.
 */
export async function clusterCommand(c: CommandContext<ClusterConfigOptions>): Promise<number> {
  const [verb] = c.args;
  if (verb !== 'config') throw new UsageError(`give config (got '${verb ?? ''}')`);
  if (c.opts.routes === undefined) throw new UsageError('--routes: give every member\'s route address, host:port, comma-separated (e.g. a:6222,b:6222,c:6222)');
  const routes = c.opts.routes.split(',').map((r) => r.trim());
  for (const r of routes) if (!HOST_PORT.test(r) || Number(r.slice(r.lastIndexOf(':') + 1)) > 65535) throw new UsageError(`--routes: '${r}' is not host:port`);
  if (routes.length < 3) throw new UsageError(`--routes: a cluster needs 3 members or more to survive the loss of one (got ${routes.length})`);
  if (new Set(routes).size !== routes.length) throw new UsageError('--routes: a member is named twice');
  if (c.opts.node === undefined) throw new UsageError(`--node: which member, 1 to ${routes.length}`);
  const node = parseCount('--node', c.opts.node, { min: 1, max: routes.length });
  const listen = c.opts.listen ?? '0.0.0.0:4222';
  if (!HOST_PORT.test(listen)) throw new UsageError(`--listen: '${listen}' is not host:port`);
  const name = parseToken('--name', c.opts.name ?? 'renderbus');
  const routePort = routes[node - 1]!.slice(routes[node - 1]!.lastIndexOf(':') + 1);
  const password = await routeSecret(natsDir(dataDirOf(c.globals)));
  const text = serverConfig({
    listen, serverName: `n${node}`, maxPayload: 1048576, maxFileStore: DEFAULT_MAX_FILE_STORE,
    storeDir: join(c.opts.store ?? '/var/lib/renderbus/nats', 'jetstream'),
    cluster: { name, listen: `0.0.0.0:${routePort}`, routes, user: 'route', password },
  });
  c.io.stdout.write(`# member ${node} of ${routes.length} of NATS cluster '${name}' (renderbus cluster config; docs/cluster.md)\n# beside it: auth.conf, copied from the farm's <data>/nats/auth.conf\n${text}`);
  return ExitCode.Ok;
}
