import { FarmError } from '../protocol/errors.ts';

/** Which listener of a site could not have its port: NATS's client port, or the monitor's HTTP port. */
export type Listener = 'nats' | 'monitor';

/**
 * A port the caller asked for by name is taken by another process. The site does not pick
 * another: the caller chose that port, so the entry point says which flag changes it.
 */
export class PortInUseError extends FarmError {
  override name = 'PortInUseError';
  readonly listener: Listener;
  readonly port: number;
  readonly address: string;
  constructor(listener: Listener, port: number, address: string, cause: unknown) {
    super('RB_BAD_ARGUMENT', `${listener === 'nats' ? 'NATS' : "the monitor's"} port ${port} is already in use on ${address} (another farm, or another program)`, { cause });
    this.listener = listener;
    this.port = port;
    this.address = address;
  }
}

/** True for "address already in use", from Node's net (EADDRINUSE) or from nats-server (sites/nats-server.ts). */
export function isAddressInUse(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'EADDRINUSE';
}
