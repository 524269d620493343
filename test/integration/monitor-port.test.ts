import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { Role } from '../../protocol/index.ts';
import { rbAs, TestFarm } from '../helpers/farm.ts';

test('monitor - a --port that another program holds is refused naming the port and the flag (exit 2), not a raw EADDRINUSE', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  const r = rbAs(farm, await farm.credsFile(Role.Monitor, 'mon'), 'monitor', '--port', String(port));
  assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`the monitor's port ${port} is already in use on 127\\.0\\.0\\.1 .*give another with --port N, or --port -1 for any free port`));
});
