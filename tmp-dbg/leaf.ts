import pino from 'pino';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startFedSites } from '../test/helpers/fed-sites.ts';
import { Role, streams } from '../protocol/index.ts';
const fed = await startFedSites();
for (const site of ['studio', 'v1']) {
  for (const role of [Role.Registry, Role.Scheduler]) {
    const nc = await fed.site(site).connectAs(role);
    try {
      const kv = await new Kvm(jetstream(nc, { timeout: 3000 })).create(streams.leaders(site), { history: 1, replicas: 1 });
      console.log(site, role, 'ok', await kv.get(role).then((e) => e?.revision ?? 'none'));
    } catch (e) { console.log(site, role, 'ERR', (e as Error).message); }
    await nc.close();
  }
}
await fed.stop();
