import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { codecs, decodeAny, encodeAny, PROTOCOL_MAJOR, Role, subjects } from '../../protocol/index.ts';
import { TEST_OPERATOR, TestFarm, waitUntil } from '../helpers/farm.ts';

// One farm for this file: registry, scheduler and a render server as separate processes.
let farm: TestFarm;
before(async () => {
  farm = await TestFarm.start();
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('node-a', 2);
});
after(async () => farm?.stop());

test('farm - renders a POV-Ray animation: every frame present, a PNG of the requested size', async () => {
  const scene = await farm.writeScene();
  const out = join(farm.dir, 'out-anim');
  const jobId = await farm.submit({ name: 'anim', scene, frames: '1-6', chunk: 2, resolution: '64x48', output: { dir: out, pattern: 'anim_####.png' } });
  const job = await farm.waitJob(jobId, 'done', 90_000).catch((e: Error) => assert.fail(`${e.message}\n${farm.logs()}`));
  assert.deepEqual(job.counts, { total: 6, queued: 0, running: 0, done: 6, failed: 0 });
  const files = (await readdir(out)).filter((f) => f.endsWith('.png')).sort();
  assert.deepEqual(files, ['anim_0001.png', 'anim_0002.png', 'anim_0003.png', 'anim_0004.png', 'anim_0005.png', 'anim_0006.png']);
  const images = await Promise.all(files.map(async (f) => PNG.sync.read(await readFile(join(out, f)))));
  for (const png of images) assert.deepEqual([png.width, png.height], [64, 48]);
  assert.notDeepEqual(images[0]!.data, images[5]!.data, 'the animation moves');
  for (const f of job.frames) {
    assert.equal(f.host, 'node-a');
    assert.equal(f.output, join(out, `anim_${String(f.frame).padStart(4, '0')}.png`));
    assert.ok(f.stats && f.stats.wallMs > 0, 'wall time recorded');
  }
});

test('farm - a scene that does not parse fails the job at its first failure, naming the frame and POV-Ray\'s error', async () => {
  const scene = await farm.writeScene('broken.pov', 'sphere { <0,0,0> 1 pigment { colour rgb <1,0,0> }\n');
  const jobId = await farm.submit({ name: 'broken', scene, frames: '1-2', maxAttempts: 1, resolution: '32x24', output: { dir: join(farm.dir, 'out-broken') } });
  const job = await farm.waitJob(jobId, 'failed', 60_000);
  // a scene error fails the whole job at its first failure: the other frame is not tried in vain
  assert.equal(job.counts.failed, 1, JSON.stringify(job.counts));
  assert.match(job.error ?? '', /^RB_JOB_FAILED: its scene is broken .*RB_SCENE_ERROR: .*Parse Error/);
  const failed = job.frames.filter((f) => f.state === 'failed');
  assert.equal(failed.length, 1);
  assert.match(failed[0]!.error ?? '', /^RB_SCENE_ERROR: .*Parse Error/);
});

test('farm - a finished job emits its done event once', async () => {
  const events: string[] = [];
  const sub = farm.nc.subscribe(`rb.${farm.site}.evt.job.*.done`, { callback: (_e, m) => void events.push((decodeAny(m.data) as { jobId: string }).jobId) });
  const scene = await farm.writeScene();
  const jobId = await farm.submit({ scene, renderer: 'command', command: 'true', frames: '1-8', output: { dir: join(farm.dir, 'out-done') } });
  await farm.waitJob(jobId);
  // a later job's done event on the same stream: a second one of the first would have come before it
  const later = await farm.submit({ scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(farm.dir, 'out-done-later') } });
  await waitUntil('the later job\'s done event', () => events.includes(later));
  sub.unsubscribe();
  assert.deepEqual(events.filter((id) => id === jobId), [jobId], 'one done event on the bus');
});

test('farm - malformed requests get error replies naming the problem, and the farm goes on', async (t) => {
  // each request as the role that owns its subject: the server delivers it, and the actor must refuse it
  const host = await farm.connectAs(Role.RenderServer, 'node-a');
  const sched = await farm.connectAs(Role.Scheduler);
  t.after(async () => {
    await host.close();
    await sched.close();
  });
  const connOf = (subject: string) => (/\.(sched\.result|reg\.register)\./.test(subject) ? host : /\.host\.[^.]+\.assign$/.test(subject) ? sched : farm.nc);
  const ask = async (subject: string, data: Uint8Array) => decodeAny((await connOf(subject).request(subject, data, { timeout: 2_000 })).data) as { ok: boolean; error?: { code: string; message: string } };
  const garbage = new Uint8Array([0xc1, 0xff, 0x00]);
  const cases: [string, Uint8Array, string][] = [
    [subjects.schedSubmit(farm.site, TEST_OPERATOR), garbage, 'RB_DECODE_FAILED'],
    [subjects.schedSubmit(farm.site, TEST_OPERATOR), encodeAny({ v: PROTOCOL_MAJOR, spec: { frames: '1' } }), 'RB_SCHEMA_MISMATCH'],
    [subjects.schedSubmit(farm.site, TEST_OPERATOR), encodeAny({ v: 9, spec: {} }), 'RB_PROTOCOL_MISMATCH'],
    [subjects.schedSubmit(farm.site, TEST_OPERATOR), encodeAny({ v: PROTOCOL_MAJOR, spec: { scene: '/x.pov', frames: '5-1', output: { dir: '/tmp/x' } } }), 'RB_BAD_JOB'],
    [subjects.schedQuery(farm.site), encodeAny({ v: PROTOCOL_MAJOR, what: 'job', jobId: 'nope' }), 'RB_UNKNOWN_JOB'],
    [subjects.schedResult(farm.site, 'node-a'), encodeAny({ v: PROTOCOL_MAJOR, host: 'x' }), 'RB_SCHEMA_MISMATCH'],
    [subjects.regMatch(farm.site), encodeAny({ v: PROTOCOL_MAJOR, requirements: { os: 'linux@6.x.y**' } }), 'RB_BAD_SPEC'],
    [subjects.regRegister(farm.site, 'node-a'), garbage, 'RB_DECODE_FAILED'],
    [subjects.hostAssign(farm.site, 'node-a'), encodeAny({ v: PROTOCOL_MAJOR, host: 'node-a', assignments: [] }), 'RB_SCHEMA_MISMATCH'],
  ];
  for (const [subject, data, code] of cases) {
    const reply = await ask(subject, data);
    assert.equal(reply.ok, false, subject);
    assert.equal(reply.error?.code, code, `${subject}: ${reply.error?.message}`);
    assert.ok(reply.error!.message.length > 0);
  }
  // events with garbage are dropped, not fatal
  farm.nc.publish(`rb.${farm.site}.evt.host.node-a.slot`, garbage);
  farm.nc.publish(subjects.regHello(farm.site), garbage);
  const scene = await farm.writeScene();
  const jobId = await farm.submit({ scene, renderer: 'command', command: 'true', frames: '1-2', output: { dir: join(farm.dir, 'out-after') } });
  await farm.waitJob(jobId);
  assert.ok(farm.procs.every((p) => p.running), `every actor still runs\n${farm.logs()}`);
  const decoded = codecs.queryReply.decode((await farm.nc.request(subjects.schedQuery(farm.site), codecs.queryRequest.encode({ v: PROTOCOL_MAJOR, what: 'jobs' }))).data);
  assert.ok(decoded.ok);
});
