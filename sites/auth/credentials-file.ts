import { readFile, rename, writeFile, mkdir, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FarmError, checkPrincipal, describePrincipal, isToken, type Credentials } from '../../protocol/index.ts';

/** The first line of every credentials file: what it is, and that it is a secret. */
const KIND = 'renderbus-credentials';

/**
 * A credentials file: one JSON document, mode 0600. It holds an nkey seed, the secret half of the
 * key the site's nats-server knows by its public half, and the principal it stands for.
 */
export async function writeCredentials(path: string, c: Credentials): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const doc = { kind: KIND, v: 1, site: c.site, role: c.role, name: c.name, ...(c.url ? { url: c.url } : {}), seed: c.seed };
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600); // whatever the umask
  await rename(tmp, path);
}

export async function readCredentials(path: string): Promise<Credentials> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FarmError('RB_BAD_CREDENTIALS', `cannot read credentials file ${path}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
  }
  return parseCredentials(text, path);
}

export function parseCredentials(text: string, where: string): Credentials {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new FarmError('RB_BAD_CREDENTIALS', `${where} is not a renderbus credentials file (not JSON)`, { cause });
  }
  if (doc === null || typeof doc !== 'object' || doc.kind !== KIND) {
    throw new FarmError('RB_BAD_CREDENTIALS', `${where} is not a renderbus credentials file (no "kind": "${KIND}")`);
  }
  if (typeof doc.site !== 'string' || !isToken(doc.site)) throw new FarmError('RB_BAD_CREDENTIALS', `${where}: "site" is missing or not a site name`);
  if (typeof doc.seed !== 'string' || !/^SU[A-Z2-7]{56}$/.test(doc.seed)) throw new FarmError('RB_BAD_CREDENTIALS', `${where}: "seed" is not a user nkey seed (SU…)`);
  if (doc.url !== undefined && typeof doc.url !== 'string') throw new FarmError('RB_BAD_CREDENTIALS', `${where}: "url" must be a string`);
  let p;
  try {
    p = checkPrincipal({ role: doc.role, name: doc.name });
  } catch (err) {
    throw new FarmError('RB_BAD_CREDENTIALS', `${where}: ${(err as Error).message}`);
  }
  return { ...p, site: doc.site, seed: doc.seed, ...(typeof doc.url === 'string' ? { url: doc.url } : {}) };
}

/** `artist ann of site studio`: for messages that say whose credential is in use. */
export function describeCredentials(c: Credentials): string {
  return `${describePrincipal(c)} of site ${c.site}`;
}
