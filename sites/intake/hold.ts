/** What decides whether the intake takes a peer's bundles now (see `holdReason`). */
export interface PeerStanding {
  /** The peer's link is quarantined by its watchdog (sites/links/link-machine.ts). */
  quarantined: boolean;
  /** This site holds the peer's site key (from the invitation, or the link's first hello). */
  keyKnown: boolean;
  /** The peer may send unsigned bundles (`site invite|join --allow-unsigned`). */
  allowUnsigned: boolean;
}

/**
 * Why the intake holds a peer's bundles (they wait in incoming/<peer>/, untouched), or undefined
 * when it takes them (pure). A quarantined peer's traffic is what wedged the link: nothing of it
 * is applied until an operator releases it (`renderbus site release <peer>`). A peer whose key is
 * not known yet cannot prove any bundle is its own; its bundles wait for the key rather than fail,
 * since the key arrives by itself with the link's first hello.
 */
export function holdReason(peer: string, s: PeerStanding): string | undefined {
  if (s.quarantined) return `${peer}'s link is quarantined: its bundles wait until an operator releases it ('renderbus site release ${peer}')`;
  if (!s.keyKnown && !s.allowUnsigned) return `${peer}'s site key is not known yet (it comes with the link's first hello): its bundles wait for it`;
  return undefined;
}
