import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { FarmError } from '../../protocol/index.ts';

/**
 * The site's result key: an age X25519 key pair the files its vendors return are encrypted to
 * (docs/federation.md, "Encrypted results"). The private half stays in `<data>/fed/result-key.txt`
 * (0600), written as `age-keygen` writes it, so an operator can decrypt a returned file by hand
 * with `age -d -i <data>/fed/result-key.txt`; the public half (`age1…`) travels in the signed
 * manifest of each job bundle that asks for encrypted results.
 */
export interface ResultKey {
  /** The public key, `age1…`: what a vendor encrypts to. */
  recipient: string;
  /** The private key, `AGE-SECRET-KEY-1…`. */
  identity: string;
  path: string;
}

export const resultKeyPath = (dataDir: string) => join(dataDir, 'fed', 'result-key.txt');

/** The site's result key from `<data>/fed/result-key.txt` (0600), made on first use. */
export async function loadResultKey(dataDir: string): Promise<ResultKey> {
  const path = resultKeyPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
    if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const identity = await generateIdentity();
    text = [
      '# renderbus result key: files returned by vendors are encrypted to its public key',
      `# created: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
      `# public key: ${await identityToRecipient(identity)}`,
      identity,
      '',
    ].join('\n');
    try {
      await writeFile(path, text, { flag: 'wx', mode: 0o600 });
    } catch (e) {
      // another part of the site made it first: use theirs
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      text = await readFile(path, 'utf8');
    }
  }
  const identity = text.split('\n').map((l) => l.trim()).find((l) => l.startsWith('AGE-SECRET-KEY-1'));
  let recipient: string | undefined;
  try {
    if (identity !== undefined) recipient = await identityToRecipient(identity);
  } catch (cause) {
    throw new FarmError('RB_BAD_ARGUMENT', `${path} holds no valid age key (AGE-SECRET-KEY-1…): ${(cause as Error).message}`, { cause });
  }
  if (identity === undefined || recipient === undefined) {
    throw new FarmError('RB_BAD_ARGUMENT', `${path} holds no age key (a line AGE-SECRET-KEY-1…): move it away and a new key is made (results already encrypted to the old one then need it to be read)`);
  }
  return { recipient, identity, path };
}
