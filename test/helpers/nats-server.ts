import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer as launch, type NatsServerHandle } from '../../sites/nats-server.ts';

/** A real nats-server with JetStream on 127.0.0.1, a random port and a fresh temporary directory. */
export async function startNatsServer(): Promise<NatsServerHandle & { dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-nats-'));
  const h = await launch({ dir, host: '127.0.0.1', port: -1 });
  return {
    ...h,
    dir,
    stop: async () => {
      await h.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
