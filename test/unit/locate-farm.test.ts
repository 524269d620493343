import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { writeCredentials } from '../../sites/auth/credentials-file.ts';
import { writeFarmFile } from '../../sites/farm-file.ts';
import { locateFarm } from '../../sites/locate-farm.ts';

test('locate farm - an empty RENDERBUS_NATS or RENDERBUS_CREDS counts as unset: the running farm\'s farm.json is used', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-locate-'));
  const saved = { nats: process.env.RENDERBUS_NATS, creds: process.env.RENDERBUS_CREDS };
  t.after(async () => {
    for (const [k, v] of [['RENDERBUS_NATS', saved.nats], ['RENDERBUS_CREDS', saved.creds]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(dir, { recursive: true, force: true });
  });
  const credsFile = join(dir, 'auth', 'op.creds');
  await writeCredentials(credsFile, { site: 'studio', role: 'operator', name: 'op', seed: new TextDecoder().decode(createUser().getSeed()) });
  // this process stands for the farm: farm.json's pid must be alive
  await writeFarmFile({ site: 'studio', url: 'nats://127.0.0.1:4999', pid: process.pid, dataDir: dir, outputDir: join(dir, 'out'), startedAt: Date.now(), credsFile });
  process.env.RENDERBUS_NATS = '';
  process.env.RENDERBUS_CREDS = '';
  const at = await locateFarm({ data: dir });
  assert.equal(at.url, 'nats://127.0.0.1:4999');
  assert.equal(at.creds.name, 'op');
  process.env.RENDERBUS_NATS = 'nats://127.0.0.1:5000';
  assert.equal((await locateFarm({ data: dir })).url, 'nats://127.0.0.1:5000', 'a set variable still wins over farm.json');
});
