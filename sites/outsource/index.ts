import type { ArrivedBundle } from '../intake/index.ts';
import { ownJobHandler, type OwnJobOptions } from './own-job.ts';
import { startPacker, type Packer, type PackerOptions } from './packer.ts';

export { forVendor, jobBundleOf, PACKER_CONSUMER, resultEncryption, startPacker, type Packer, type PackerOptions } from './packer.ts';
export { ownJobHandler, type OwnJobOptions } from './own-job.ts';

/** The packer's options are the whole half's: a connection with the intake role (protocol/roles.ts), the site, its peers. */
export type OutsourcingOptions = PackerOptions & Pick<OwnJobOptions, 'outputDirFor' | 'keyOf'>;

export interface Outsourcing {
  /** The intake's ownJob half (sites/intake/router.ts IntakeHandlers.ownJob). */
  ownJob(b: ArrivedBundle): Promise<void>;
  /** What the packer did with each event, for tests. */
  readonly packer: Packer;
  stop(): Promise<void>;
}

/**
 * The studio side of outsourcing: the packer (job and cancel bundles into `outgoing/<peer>/`) and
 * the ownJob half of the intake (status, frames, logs and bills of the jobs sent out, back in).
 */
export async function startOutsourcing(o: OutsourcingOptions): Promise<Outsourcing> {
  const packer = await startPacker(o);
  return { ownJob: ownJobHandler(o), packer, stop: () => packer.stop() };
}
