import { linksConfig } from './nats-config.ts';
import { linksOf, type SiteStore } from './peer-store.ts';

/** What a running nats-server needs for a change of the site's store. */
export const LinkChange = {
  /** The generated config is the same (a peer's key recorded, unsigned bundles allowed). */
  Nothing: 'nothing',
  /** Accounts and users changed, the `leafnodes` block did not (a leaf peer added or removed at a hub). */
  Reload: 'reload',
  /** The `leafnodes` block changed (a hub we dial added or removed, the listener): nats-server 2.9.10 refuses to reload it. */
  Restart: 'restart',
} as const;
export type LinkChange = (typeof LinkChange)[keyof typeof LinkChange];

/**
 * How a running site applies a new store (pure). Measured on 2.9.10: a reload that touches
 * `leafnodes` is refused as a whole (`config reload not supported for LeafNode`), and nothing of
 * it applies; accounts and their users reload, and the links already up stay up.
 */
export function linkChange(before: SiteStore | null, after: SiteStore): LinkChange {
  const a = linksConfig(linksOf(after));
  const b = before ? linksConfig(linksOf(before)) : { domain: '', farm: [], accounts: [], leafnodes: [] };
  if (b.domain !== a.domain || JSON.stringify(b.leafnodes) !== JSON.stringify(a.leafnodes)) return LinkChange.Restart;
  if (JSON.stringify(b) !== JSON.stringify(a)) return LinkChange.Reload;
  return LinkChange.Nothing;
}
