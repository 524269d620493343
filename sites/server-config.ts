/** One member's part of a NATS cluster (docs/cluster.md). */
export interface ClusterBlock {
  /** The cluster's name: the same on every member. */
  name: string;
  /** host:port this member's route listener binds (6222 by NATS's convention). */
  listen: string;
  /** host:port of every member's route listener, this one's included (nats-server skips itself). */
  routes: readonly string[];
  /** The route credential every member shares: without it anyone who reaches a route port could join. */
  user: string;
  password: string;
}

export interface ServerConfig {
  /** host:port of the client listener (port -1: a free one). */
  listen: string;
  /** Unique in a cluster: JetStream names its peers by it. */
  serverName: string;
  maxPayload: number;
  storeDir: string;
  maxFileStore: number;
  /** JetStream domain (a linked site's, sites/links/). */
  domain?: string;
  cluster?: ClusterBlock;
  /** The accounts file, relative to nats.conf (default `auth.conf` beside it). */
  authInclude?: string;
}

const q = (s: string) => JSON.stringify(s);
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** The route URL a member dials, with the shared route credential (both are tokens: no escaping needed). */
function routeUrl(c: ClusterBlock, hostPort: string): string {
  return `nats-route://${c.user}:${c.password}@${hostPort}`;
}

/** The `cluster {}` block of one member's nats.conf (pure). */
export function clusterBlock(c: ClusterBlock): string[] {
  for (const [what, v] of [['cluster name', c.name], ['route user', c.user], ['route password', c.password]] as const) {
    if (!TOKEN.test(v)) throw new Error(`${what} '${v}' must be letters, digits, '-' or '_'`);
  }
  return [
    'cluster {',
    `  name: ${q(c.name)}`,
    `  listen: ${q(c.listen)}`,
    `  authorization { user: ${q(c.user)}, password: ${q(c.password)} }`,
    `  routes: [${c.routes.map((r) => q(routeUrl(c, r))).join(', ')}]`,
    '}',
  ];
}

/**
 * A site's nats.conf (pure): the client listener, the server's name, JetStream with its store,
 * the cluster block when it is a member of one, and the accounts from `auth.conf` beside it
 * (the same file on every member: sites/nats-config.ts).
 */
export function serverConfig(o: ServerConfig): string {
  const domain = o.domain ? `, domain: ${o.domain}` : '';
  return [
    `listen: ${q(o.listen)}`,
    `server_name: ${q(o.serverName)}`,
    `max_payload: ${o.maxPayload}`,
    `jetstream { store_dir: ${q(o.storeDir)}, max_file_store: ${o.maxFileStore}${domain} }`,
    ...(o.cluster ? clusterBlock(o.cluster) : []),
    `include ${q(o.authInclude ?? 'auth.conf')}`,
    '',
  ].join('\n');
}
