import { FarmError, isToken } from '../../protocol/index.ts';
import { isSiteKey } from './peer-store.ts';

/**
 * What a hub hands a new peer (`renderbus site invite <peer>`), and the peer gives back to
 * `renderbus site join`: everything the peer needs to dial the hub and check what it signs.
 * It holds the leaf password: a secret, handed over by a safe channel.
 */
export interface Invitation {
  /** The inviting site (the hub): its name and JetStream domain. */
  hub: string;
  /** The hub's leaf listener as the peer dials it: `nats-leaf://<advertise>`. */
  url: string;
  /** The invited site's name: the join is refused at a site of another name. */
  peer: string;
  /** The leaf password the peer logs in with (user `leaf-<peer>` in the hub's `FED_<PEER>`). */
  password: string;
  /** The hub's site key (Ed25519, base64url SPKI): the peer checks the hub's signed bundles with it. */
  hubKey: string;
}

/** Tokens start with this, then the format's version: `rbinv1.<base64url JSON>`. */
const PREFIX = 'rbinv';
export const INVITATION_VERSION = 1;

const LEAF_URL = /^(nats-leaf|tls):\/\/[^/@\s"]+:\d{1,5}$/;
const PASSWORD = /^[A-Za-z0-9_-]{24,128}$/;

const bad = (message: string) => new FarmError('RB_BAD_ARGUMENT', `invitation: ${message}`);

/** One line, safe to paste in a shell (base64url: no quoting needed). */
export function encodeInvitation(inv: Invitation): string {
  checkInvitation(inv);
  const body = { v: INVITATION_VERSION, hub: inv.hub, url: inv.url, peer: inv.peer, password: inv.password, hubKey: inv.hubKey };
  return `${PREFIX}${INVITATION_VERSION}.${Buffer.from(JSON.stringify(body)).toString('base64url')}`;
}

/**
 * Reads a token; every mistake is an RB_BAD_ARGUMENT saying what is wrong: not a token, another
 * version, damaged, a field missing or wrong, or (with `site`) an invitation meant for another site
 * or coming from a site of our own name.
 */
export function decodeInvitation(token: string, o: { site?: string } = {}): Invitation {
  const t = token.trim();
  const m = /^rbinv(\d+)\.(.*)$/s.exec(t);
  if (!m) throw bad(`'${t.length > 24 ? `${t.slice(0, 24)}…` : t}' is not an invitation token (they start with ${PREFIX}${INVITATION_VERSION}.; ask the inviting site for 'renderbus site invite' output)`);
  if (Number(m[1]) !== INVITATION_VERSION) throw bad(`version ${m[1]} is not one this renderbus reads (it reads ${INVITATION_VERSION}): update renderbus, or ask for a new invitation`);
  const body = m[2]!;
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw bad('the token is damaged (characters outside base64url: was it cut or wrapped when copied?)');
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new FarmError('RB_BAD_ARGUMENT', 'invitation: the token is damaged (not JSON once decoded: was it cut when copied?)', { cause });
  }
  if (doc === null || typeof doc !== 'object' || doc.v !== INVITATION_VERSION) throw bad('the token is damaged (its content does not say version 1)');
  const str = (k: string) => (typeof doc[k] === 'string' ? doc[k] : '');
  const inv: Invitation = { hub: str('hub'), url: str('url'), peer: str('peer'), password: str('password'), hubKey: str('hubKey') };
  checkInvitation(inv);
  if (o.site !== undefined) {
    if (inv.hub === o.site) throw bad(`the inviting site is named '${inv.hub}', like this one: two linked sites need different names (their JetStream domains)`);
    if (inv.peer !== o.site) throw bad(`it is for site '${inv.peer}', and this site is '${o.site}' (ask '${inv.hub}' for an invitation for '${o.site}')`);
  }
  return inv;
}

function checkInvitation(inv: Invitation): void {
  if (!isToken(inv.hub)) throw bad(`hub '${inv.hub}' is not a site name`);
  if (!isToken(inv.peer)) throw bad(`peer '${inv.peer}' is not a site name`);
  if (inv.hub === inv.peer) throw bad(`hub and peer are both '${inv.hub}'`);
  if (!LEAF_URL.test(inv.url)) throw bad(`url '${inv.url}' is not nats-leaf://host:port or tls://host:port`);
  if (!PASSWORD.test(inv.password)) throw bad('the leaf password is missing or malformed');
  if (!isSiteKey(inv.hubKey)) throw bad("the hub's site key is missing or not an ed25519 public key");
}
