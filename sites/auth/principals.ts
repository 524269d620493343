import { createUser, fromSeed } from '@nats-io/nkeys';
import { readFile, rename, writeFile, mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError, checkPrincipal, type Credentials, type Principal, type Role } from '../../protocol/index.ts';
import { withFileLock } from '../file-lock.ts';

/** One principal the site's nats-server lets in: its public nkey only (the seed went to its holder). */
export interface IssuedPrincipal extends Principal {
  site: string;
  publicKey: string;
  issuedAt: number;
  /** Kept in `<data>/auth/local/` for the actors `renderbus up` runs itself. */
  local?: boolean;
}

interface StoreFile {
  v: 1;
  principals: IssuedPrincipal[];
}

export const authDir = (dataDir: string) => join(dataDir, 'auth');
const storePath = (dataDir: string) => join(authDir(dataDir), 'principals.json');
export const localCredsPath = (dataDir: string, p: Principal) => join(authDir(dataDir), 'local', `${p.role}-${p.name}.creds`);

/** A new user nkey: the seed (secret, `SU…`) and the public key (`U…`) the server is told. */
export function newUserKey(): { seed: string; publicKey: string } {
  const kp = createUser();
  return { seed: new TextDecoder().decode(kp.getSeed()), publicKey: kp.getPublicKey() };
}

export function publicKeyOf(seed: string): string {
  return fromSeed(new TextEncoder().encode(seed)).getPublicKey();
}

export async function listPrincipals(dataDir: string): Promise<IssuedPrincipal[]> {
  let text: string;
  try {
    text = await readFile(storePath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const doc = JSON.parse(text) as StoreFile;
    if (!Array.isArray(doc.principals)) throw new Error('no "principals" list');
    return doc.principals.map((p) => ({ ...p, ...checkPrincipal(p), site: String(p.site) }));
  } catch (cause) {
    throw new FarmError('RB_BAD_CREDENTIALS', `${storePath(dataDir)} is damaged: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Issues a credential: a new key pair whose public half joins the store. The seed is returned
 * (and, for `local`, kept in `<data>/auth/local/`); the caller writes it where its holder needs it.
 */
export async function issuePrincipal(dataDir: string, site: string, p: Principal, o: { url?: string; local?: boolean } = {}): Promise<Credentials> {
  const principal = checkPrincipal(p);
  const key = newUserKey();
  await withStore(dataDir, (list) => [...list, { ...principal, site, publicKey: key.publicKey, issuedAt: Date.now(), ...(o.local ? { local: true } : {}) }]);
  return { ...principal, site, seed: key.seed, ...(o.url ? { url: o.url } : {}) };
}

/** Takes every credential of that role and name out of the store; how many there were. */
export async function revokePrincipal(dataDir: string, site: string, role: Role, name: string): Promise<number> {
  let removed = 0;
  await withStore(dataDir, (list) => {
    const kept = list.filter((p) => !(p.site === site && p.role === role && p.name === name));
    removed = list.length - kept.length;
    return kept;
  });
  return removed;
}

/**
 * Read-modify-write of the store under a lock file, so that two `renderbus credentials` at once
 * cannot lose one another's principal. A lock left by a dead process is taken over.
 */
async function withStore(dataDir: string, change: (list: IssuedPrincipal[]) => IssuedPrincipal[]): Promise<void> {
  const dir = authDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await withFileLock(join(dir, 'principals.lock'), { code: 'RB_BAD_CREDENTIALS', what: "another 'renderbus credentials'" }, async () => {
    const next = change(await listPrincipals(dataDir));
    const path = storePath(dataDir);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ v: 1, principals: next } satisfies StoreFile, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  });
}
