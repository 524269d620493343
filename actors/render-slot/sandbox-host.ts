import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sandboxArgv } from './sandbox.ts';

/** What this host sandboxes with (sandbox.ts): bubblewrap, and as root the user renderers drop to. */
export interface SandboxHost {
  bwrap: string;
  /** bubblewrap's version: the `sandbox` package's, in the host's inventory. */
  version: string;
  runAs?: { uid: number; gid: number; setpriv: string };
}

/** The user a sandboxed renderer runs as when the render server is root: Debian's `nobody`. */
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;

const BWRAP = ['/usr/bin/bwrap', '/usr/local/bin/bwrap'];
const SETPRIV = '/usr/bin/setpriv';

let found: Promise<SandboxHost | null> | undefined;

/**
 * Whether this host can run the I/O wrapper: bwrap present (and setpriv, as root) and a trial
 * sandbox of `true` exits 0 (a kernel without unprivileged user namespaces fails it when the
 * render server is not root). Once per process; null when it cannot, and the render server then
 * advertises no `sandbox` package, so sandboxed jobs never come to it.
 */
export function detectSandbox(): Promise<SandboxHost | null> {
  found ??= trial();
  return found;
}

async function trial(): Promise<SandboxHost | null> {
  const bwrap = BWRAP.find((p) => existsSync(p));
  if (!bwrap) return null;
  const root = process.getuid?.() === 0;
  if (root && !existsSync(SETPRIV)) return null;
  const runAs = root ? { uid: SANDBOX_UID, gid: SANDBOX_GID, setpriv: SETPRIV } : undefined;
  const version = /(\d+(?:\.\d+)+)/.exec(await run(bwrap, ['--version']).catch(() => ''))?.[1];
  if (!version) return null;
  const work = await mkdtemp(join(tmpdir(), 'rb-sandbox-probe-'));
  try {
    const argv = sandboxArgv({ bwrap, ...(runAs ? { runAs } : {}), inputs: [], workDir: work, extra: [] }, ['true'], '/', { PATH: '/usr/bin:/bin' });
    await run(argv[0]!, argv.slice(1));
    return { bwrap, version, ...(runAs ? { runAs } : {}) };
  } catch {
    return null;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 10_000, env: { PATH: '/usr/bin:/bin' } }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}
