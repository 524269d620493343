import { subjects } from '../../protocol/index.ts';
import { checkSiteLinks, DEFAULT_DMZ_QUOTA, dmzAccount, leafUser, PeerRole, type Peer, type SiteLinks } from './peer.ts';

/** The empty account an unknown or unauthenticated leaf lands in: it sees and reaches nothing. */
export const QUARANTINE = 'QUARANTINE';

/** What a site's links add to its nats-server config (sites/nats-config.ts places each part). */
export interface LinksConfig {
  /** The site's JetStream domain: its name, so `$JS.<site>.API` reaches it from across a leaf. */
  domain: string;
  /** Lines inside account FARM, after its users: what it shares with each peer's DMZ. */
  farm: string[];
  /** Lines inside `accounts { }` after FARM: one DMZ account per peer, and QUARANTINE. */
  accounts: string[];
  /** The top-level `leafnodes { }` block. */
  leafnodes: string[];
}

const q = (s: string) => JSON.stringify(s);

/**
 * The federation part of a site's nats-server config (pure). For each peer P of site S:
 * - account `FED_P`, the DMZ: the leaf of P lands (or our remote binds) here, with P's quota;
 * - FARM exports to FED_P only `rb.fed.P.S.>` (stream: S tells P) and `rb.fedsvc.S.P.>` (service:
 *   P asks S), and imports from FED_P only `rb.fed.S.P.>` and `rb.fedsvc.P.S.>`. A message P
 *   sends under another sender token reaches FED_P and stops there: the token is checked by the
 *   accounts, not by our code;
 * - a leaf P logs in as `leaf-P` with a password, denied the JetStream admin verbs of our domain;
 *   a leaf without (or with unknown) credentials lands in QUARANTINE.
 */
export function linksConfig(links: SiteLinks): LinksConfig {
  const { site, peers, listen } = checkSiteLinks(links);
  const farm: string[] = [];
  const accounts: string[] = [];
  if (peers.length > 0) {
    farm.push('    exports: [');
    for (const p of peers) {
      const dmz = dmzAccount(p.name);
      farm.push(`      { stream: ${q(subjects.allFed(p.name, site))}, accounts: [${dmz}] }`);
      farm.push(`      { service: ${q(subjects.allFedSvc(site, p.name))}, accounts: [${dmz}] }`);
    }
    farm.push('    ]', '    imports: [');
    for (const p of peers) {
      const dmz = dmzAccount(p.name);
      farm.push(`      { stream: { account: ${dmz}, subject: ${q(subjects.allFed(site, p.name))} } }`);
      farm.push(`      { service: { account: ${dmz}, subject: ${q(subjects.allFedSvc(p.name, site))} } }`);
    }
    farm.push('    ]');
  }
  for (const p of peers) accounts.push(...dmzLines(site, p));
  if (listen) accounts.push(`  ${QUARANTINE} {}`);

  const leafnodes = ['leafnodes {'];
  if (listen) {
    leafnodes.push(`  listen: ${q(`${listen.host}:${listen.port}`)}`);
    leafnodes.push(`  advertise: ${q(listen.advertise)}`);
    // no user list here: a leaf logs in as a user of its DMZ account; anything else lands in QUARANTINE
    leafnodes.push(`  authorization { account: ${QUARANTINE} }`);
  }
  const hubs = peers.filter((p) => p.role === PeerRole.Hub);
  if (hubs.length > 0) {
    leafnodes.push('  remotes: [');
    for (const h of hubs) {
      const u = new URL(h.url!);
      const url = `${u.protocol}//${leafUser(site)}:${h.password}@${u.host}`;
      // the same protection from the hub's side: what it sends us across the link
      leafnodes.push(`    { url: ${q(url)}, account: ${dmzAccount(h.name)}, deny_imports: [${adminDeny(site).map(q).join(', ')}] }`);
    }
    leafnodes.push('  ]');
  }
  leafnodes.push('}');
  return { domain: site, farm, accounts, leafnodes: listen || hubs.length > 0 ? leafnodes : [] };
}

/** What a peer may not ask of our JetStream across the link: create, change or remove anything. */
function adminDeny(site: string): string[] {
  const js = `$JS.${site}.API`;
  return ['STREAM.CREATE.>', 'STREAM.UPDATE.>', 'STREAM.DELETE.>', 'STREAM.PURGE.>', 'STREAM.MSG.DELETE.>', 'STREAM.RESTORE.>', 'CONSUMER.DELETE.>']
    .map((v) => `${js}.${v}`)
    .concat('$JS.API.>');
}

function dmzLines(site: string, p: Peer): string[] {
  const quota = p.quota ?? DEFAULT_DMZ_QUOTA;
  const lines = [`  ${dmzAccount(p.name)} {`];
  lines.push(`    jetstream: { max_memory: ${quota.maxMemory}, max_file: ${quota.maxFile}, max_streams: ${quota.maxStreams}, max_consumers: ${quota.maxConsumers} }`);
  const users: string[] = (p.linkKeys ?? []).map((k) => `      { nkey: ${q(k)} }   # this site's link to ${p.name}`);
  if (p.role === PeerRole.Leaf) {
    // the leaf may source our outbox and read its own stream info, not remove or rewrite anything
    const deny = adminDeny(site);
    users.push(`      { user: ${q(leafUser(p.name))}, password: ${q(p.password)}, permissions: { publish: { deny: [${deny.map(q).join(', ')}] } } }`);
  }
  if (users.length > 0) lines.push('    users: [', ...users, '    ]');
  lines.push('    exports: [');
  lines.push(`      { stream: ${q(subjects.allFed(site, p.name))}, accounts: [FARM] }`);
  lines.push(`      { service: ${q(subjects.allFedSvc(p.name, site))}, accounts: [FARM] }`);
  lines.push('    ]', '    imports: [');
  lines.push(`      { stream: { account: FARM, subject: ${q(subjects.allFed(p.name, site))} } }`);
  lines.push(`      { service: { account: FARM, subject: ${q(subjects.allFedSvc(site, p.name))} } }`);
  lines.push('    ]', '  }');
  return lines;
}
