import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestFarm, waitUntil } from '../helpers/farm.ts';

test('tail - follows the events through a nats-server restart', { timeout: 90_000 }, async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.scheduler();
  const tail = await farm.spawnActor('tail', ['tail']);
  const { spec } = await farm.ledgerJob('tailed', '1', 0);
  // it prints its start line once the server has its subscription
  await waitUntil('the tail to start', () => tail.output.includes('tailing '), 20_000);
  const before = await farm.submit({ ...spec, name: 'before' });
  await waitUntil('the tail to show the first job', () => tail.output.includes(before), 20_000);

  await farm.killNats();
  await waitUntil('the tail to see the server go', () => tail.output.includes('lost the connection') || !tail.running, 20_000);
  await farm.startNats();
  await waitUntil('the tail to reconnect', () => tail.output.includes('reconnected to'), 30_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; running: ${tail.running}\n${tail.output}`);
  });
  await waitUntil('the scheduler to serve again', () => farm.jobs().then(() => true, () => false), 30_000);
  const after = await farm.submit({ ...spec, name: 'after' });
  await waitUntil('the tail to show the job submitted after the restart', () => tail.output.includes(after), 20_000);
  assert.ok(tail.running, 'the tail still runs');
});
