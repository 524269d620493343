import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { PROTOCOL_MAJOR, Role, streams, type JournalRecord } from '../../protocol/index.ts';
import { Journal } from '../../actors/scheduler/journal.ts';
import { startNatsServer } from '../helpers/nats-server.ts';

const task = (taskIndex: number): JournalRecord => ({
  v: PROTOCOL_MAJOR, kind: 'task', jobId: 'j1', taskIndex, status: 'done', attempt: 1, host: 'h1', slot: 0,
  outputs: [], stats: { wallMs: 1, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 }, at: 1,
});

test('journal - task records appended in one turn are stored as one message, in order with the rest, and replay record by record', async (t) => {
  const nats = await startNatsServer();
  const site = 'jt';
  const nc = await nats.connectAs(site, Role.Scheduler); // the journal's writer
  t.after(async () => {
    await nc.close();
    await nats.stop();
    await rm(nats.dir, { recursive: true, force: true });
  });
  const journal = await Journal.open(nc, site, pino({ level: 'silent' }));
  const written: JournalRecord[] = [
    { v: PROTOCOL_MAJOR, kind: 'cancel', jobId: 'j0', at: 1 },
    task(0), task(1), task(2),
    { v: PROTOCOL_MAJOR, kind: 'limit', name: 'maya', max: 2, per: 'task', at: 2 },
    task(3),
  ];
  await Promise.all(written.map((r) => journal.append(r)));
  await journal.append(task(4)); // alone in its turn: a message of its own
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streams.journal(site));
  assert.equal(info.state.messages, 5, 'cancel, a batch of 3 tasks, limit, task 3, task 4');
  const replayed: JournalRecord[] = [];
  const n = await journal.replay((r) => replayed.push(r));
  assert.equal(n, 7);
  assert.deepEqual(replayed, [...written, task(4)]);
});
