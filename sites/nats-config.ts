import { permissionsFor, type Principal } from '../protocol/index.ts';
import type { LinksConfig } from './links/index.ts';

/** A user the site's nats-server lets in: a public nkey bound to a principal's permissions. */
export interface AuthUser extends Principal {
  /** The site whose subjects its permissions name. */
  site: string;
  publicKey: string;
}

const q = (s: string) => JSON.stringify(s);

/**
 * The `accounts` block of a site's nats-server (pure: the launcher writes it to `auth.conf`, which
 * `nats.conf` includes, and a reload rewrites only it). Every user logs in with an nkey into the
 * account FARM, with the allow lists of its role (protocol/roles.ts); a connection without one of
 * these keys is refused, loopback included. There is no `no_auth_user`: the server has no
 * anonymous way in (notes/nats.md: never with a leaf listener). A site with peers adds their DMZ
 * accounts, what FARM shares with each, and its leaf listener and remotes (sites/links/).
 */
export function authConfig(users: readonly AuthUser[], links?: LinksConfig): string {
  const lines = ['accounts {', '  FARM {', '    jetstream: enabled', '    users: ['];
  for (const u of users) {
    const p = permissionsFor(u.site, u);
    lines.push(`      # ${u.role} ${u.name} of site ${u.site}`);
    lines.push(`      { nkey: ${q(u.publicKey)}, permissions: {`);
    lines.push(`          publish: { allow: [${p.publish.map(q).join(', ')}] }`);
    lines.push(`          subscribe: { allow: [${p.subscribe.map(q).join(', ')}] }`);
    if (p.allowResponses) lines.push('          allow_responses: true');
    lines.push('      } }');
  }
  lines.push('    ]');
  if (links) lines.push(...links.farm);
  lines.push('  }');
  if (links) lines.push(...links.accounts);
  lines.push('}', ...(links?.leafnodes ?? []), '');
  return lines.join('\n');
}
