import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer as launch, type NatsServerHandle } from '../../sites/nats-server.ts';

/**
 * A real nats-server with JetStream on 127.0.0.1, a random port and a fresh temporary directory;
 * or, to restart one, the port and directory it had (the directory is then left in place).
 */
export async function startNatsServer(o: { dir?: string; port?: number } = {}): Promise<NatsServerHandle & { dir: string; port: number }> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'rb-nats-')));
  const h = await launch({ dir, host: '127.0.0.1', port: o.port ?? -1 });
  return {
    ...h,
    dir,
    port: Number(new URL(h.url).port),
    stop: async () => {
      await h.stop();
      if (!o.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
