import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { startRenderServer } from '../../actors/render-server/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects, type TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { TestFarm, waitUntil } from '../helpers/farm.ts';

const v = PROTOCOL_MAJOR;

test('render-server - a host that fails every task logs each one at warn and sums the streak up, at the default level', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  const scene = await farm.writeScene('shot.scene', 'scene');
  const out = join(farm.dir, 'out');
  // ten tasks whose program this host does not have, then one that renders
  const tasks: TaskAssignment[] = [];
  for (let i = 0; i < 10; i++) tasks.push(aTaskAssignment({ jobId: i < 5 ? 'ja' : 'jb', taskIndex: i, scene, outputDir: out, frames: [i + 1], command: 'no-such-renderer-rb {frame}' }));
  tasks.push(aTaskAssignment({ jobId: 'jc', taskIndex: 10, scene, outputDir: out, frames: [11] }));

  // the scheduler's side, played by the test: each result is answered with the next task
  const sched = await farm.connectAs(Role.Scheduler);
  const results: string[] = [];
  sched.subscribe(subjects.schedResult(farm.site, 'node-9'), {
    callback: (_e, m) => {
      const r = codecs.taskResult.decode(m.data);
      results.push(`${r.taskId}:${r.status}:${r.error?.code ?? ''}`);
      m.respond(codecs.taskResultReply.encode({ v, ok: true, body: { next: tasks[results.length] ?? null } }));
    },
  });
  await sched.flush();

  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } });
  const rs = await startRenderServer({ nc: await farm.connectAs(Role.RenderServer, 'node-9'), site: farm.site, host: 'node-9', slots: 1, log: pino({ level: 'info' }, sink), heartbeatMs: 500 });
  t.after(() => rs.stop());
  await sched.request(subjects.hostAssign(farm.site, 'node-9'), codecs.assignRequest.encode({ v, host: 'node-9', assignments: [tasks[0]!] }), { timeout: 3_000 });
  await waitUntil('every task to be reported', () => results.length === tasks.length, 20_000);
  assert.deepEqual(results.slice(-1), ['jc.10:done:']);

  const failed = lines.filter((l) => l.msg === 'task failed');
  assert.equal(failed.length, 10);
  assert.deepEqual(
    { ...failed[0], time: undefined, pid: undefined, hostname: undefined },
    {
      level: 40, time: undefined, pid: undefined, hostname: undefined, actor: 'render-slot', host: 'node-9', slot: 0,
      jobId: 'ja', taskId: 'ja.0', attempt: 1, frames: '1', code: 'RB_RENDERER_MISSING',
      error: `program 'no-such-renderer-rb' is not installed on host node-9: not found on PATH (${(process.env.PATH ?? '').split(':').filter((d) => d !== '').join(':')})`,
      msg: 'task failed',
    },
  );
  // one summary at 5 and one at 10 in a row, not one per failure; then one line when it renders again
  const streaks = lines.filter((l) => l.msg === 'this host failed every task in a row');
  assert.deepEqual(streaks.map((l) => [l.level, l.failedInARow, l.frames, l.codes, l.jobs]), [
    [40, 5, 5, { RB_RENDERER_MISSING: 5 }, ['ja']],
    [40, 10, 10, { RB_RENDERER_MISSING: 10 }, ['ja', 'jb']],
  ]);
  const back = lines.filter((l) => l.msg === 'a task succeeded again after failures in a row');
  assert.deepEqual(back.map((l) => [l.level, l.failedInARow]), [[30, 10]]);
});
