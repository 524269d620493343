import { lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { BundleBill, BundleJobRef } from '../../protocol/index.ts';
import { syncDir } from '../cas/index.ts';
import { writeFileAtomically } from '../write-atomically.ts';

/** Bills this site was sent by its vendors, kept by the intake (sites/outsource/own-job.ts): `<data>/fed/bills/<peer>/<job>.<bundle>.json`. */
export const keptBillsDir = (dataDir: string) => join(dataDir, 'fed', 'bills');
/** Bills this site sent to the peers whose jobs it rendered (sites/remote-jobs/returner.ts): `<data>/fed/bills-issued/<peer>/<their job>.json`. */
export const issuedBillsDir = (dataDir: string) => join(dataDir, 'fed', 'bills-issued');

/**
 * One bill file, either way. `from` issued it (the vendor); `jobRef` is the job at the site that
 * owns it (the studio's). `project`, `jobName`, `user`: the job as the studio knows it (absent in
 * bills kept before they were recorded). An issued bill also names its addressee (`to`) and the
 * job it rendered here (`localJob`).
 */
export const BillFile = Type.Object({
  bundleId: Type.String({ minLength: 1 }),
  from: Type.String({ minLength: 1 }),
  to: Type.Optional(Type.String({ minLength: 1 })),
  jobRef: BundleJobRef,
  createdAt: Type.Integer({ minimum: 0 }),
  signed: Type.Boolean(),
  receivedAt: Type.Optional(Type.Integer({ minimum: 0 })),
  project: Type.Optional(Type.String()),
  jobName: Type.Optional(Type.String()),
  user: Type.Optional(Type.String()),
  localJob: Type.Optional(Type.String()),
  bill: BundleBill,
});
export type BillFile = Static<typeof BillFile>;

const check = TypeCompiler.Compile(BillFile);

/** A bill file as read: the peer it is with (the vendor for kept bills, the customer for issued ones). */
export interface ReadBill {
  file: string;
  peer: string;
  content: BillFile;
}

/** A bill file that could not be read: named, with why; the others are still listed. */
export interface BillProblem {
  file: string;
  error: string;
}

/**
 * Every bill file under `<data>/fed/bills/` (or `bills-issued/` with `issued`), each checked
 * against BillFile. A file that does not parse, or does not hold a bill, is a problem named by
 * its path, not a failure of the whole listing. No folder: no bills.
 */
export async function readBillFiles(dataDir: string, o: { issued?: boolean } = {}): Promise<{ bills: ReadBill[]; problems: BillProblem[] }> {
  const root = o.issued ? issuedBillsDir(dataDir) : keptBillsDir(dataDir);
  const bills: ReadBill[] = [];
  const problems: BillProblem[] = [];
  const peers = await readdir(root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  for (const p of peers.filter((d) => d.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const names = (await readdir(join(root, p.name))).filter((n) => n.endsWith('.json')).sort();
    for (const name of names) {
      const file = join(root, p.name, name);
      try {
        const value: unknown = JSON.parse(await readFile(file, 'utf8'));
        if (!check.Check(value)) {
          const e = check.Errors(value).First();
          throw new Error(`not a bill: ${e?.path || '/'}: ${e?.message ?? 'invalid'}`);
        }
        bills.push({ file, peer: p.name, content: value });
      } catch (err) {
        problems.push({ file, error: err instanceof SyntaxError ? `not JSON: ${err.message}` : (err as Error).message });
      }
    }
  }
  return { bills, problems };
}

/**
 * Keeps a copy of a bill this site sends to a peer, once per job (`<their job>.json`): a copy
 * already there is left as it is, so an event handled again changes nothing. Written before the
 * bundle is dropped, so a crash between the two loses no copy of a bill that went out.
 */
export async function keepIssuedBill(dataDir: string, peer: string, content: BillFile): Promise<void> {
  const dir = join(issuedBillsDir(dataDir), peer);
  const file = join(dir, `${content.jobRef.job}.json`);
  if (await lstat(file).then(() => true, () => false)) return;
  await mkdir(dir, { recursive: true, mode: 0o750 });
  await writeFileAtomically(file, `${JSON.stringify(content, null, 2)}\n`, 0o640);
  await syncDir(dir);
}
