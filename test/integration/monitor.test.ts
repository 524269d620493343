import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

let farm: TestFarm;
let scheduler: ActorProcess;

before(async () => {
  farm = await TestFarm.start();
  await farm.registry();
  scheduler = await farm.scheduler();
  await farm.renderServer('node-a', 2);
});
after(async () => {
  await farm?.stop();
});

/** Sample lines of a Prometheus text exposition as name{labels} → value; throws on a line that is not one. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?(?:[0-9.]+(?:e[+-]?[0-9]+)?|\+Inf|NaN))$/;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a Prometheus sample line: '${line}'`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}

test('monitor - /metrics shows jobs, frames, slots, hosts and the dispatch latency of a real farm', async (t) => {
  // ready once its first snapshot is in (so it follows the bus before the job starts)
  const { proc: monitor, base } = await farm.monitor();
  t.after(() => monitor.kill('SIGTERM'));

  const frames = 4;
  const { spec } = await farm.ledgerJob('metered', `1-${frames}`, 0.2);
  const jobId = await farm.submit(spec);
  await farm.waitJob(jobId, 'done', 30_000);

  let last = '';
  const want: Record<string, number> = {
    'renderbus_jobs{state="done"}': 1,
    'renderbus_jobs{state="queued"}': 0,
    'renderbus_jobs{state="rendering"}': 0,
    renderbus_frames_done_total: frames,
    renderbus_frames_failed_total: 0,
    'renderbus_slots{state="busy"}': 0,
    'renderbus_slots{state="free"}': 2,
    renderbus_hosts_up: 1,
    renderbus_hosts_sick: 0,
    renderbus_dispatch_latency_seconds_count: frames,
    'renderbus_dispatch_latency_seconds_bucket{le="+Inf"}': frames,
  };
  const samples = await waitUntil('the metrics to show the finished job', async () => {
    const r = await fetch(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    last = await r.text();
    const s = parseMetrics(last);
    // the load comes with the render server's heartbeats (every 2 s), through the next registry snapshot
    return Object.entries(want).every(([k, v]) => s.get(k) === v) && s.has('renderbus_host_load{host="node-a"}') ? s : undefined;
  }, 15_000).catch((e: Error) => assert.fail(`${e.message}\n${last}\n${farm.logs()}`));

  assert.ok((samples.get('renderbus_host_load{host="node-a"}') ?? -1) >= 0, last);
  assert.ok((samples.get('renderbus_dispatch_latency_seconds_sum') ?? -1) >= 0, last);
  assert.match(last, /# TYPE renderbus_dispatch_latency_seconds histogram/);
  assert.match(last, /# TYPE renderbus_frames_done_total counter/);

  // snapshots go on, every --interval (the job may have ended before the second one)
  const h = await waitUntil('a second snapshot', async () => {
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { snapshots: number; failedSnapshots: number };
    return body.snapshots >= 2 ? body : undefined;
  }, 10_000);
  assert.equal(h.failedSnapshots, 0, JSON.stringify(h));
  assert.equal((await fetch(`${base}/nothing-here`)).status, 404);

  // a scheduler that does not answer: snapshots are incomplete, the model keeps what it had
  await scheduler.kill('SIGKILL');
  await waitUntil('a snapshot without the scheduler', async () => ((await (await fetch(`${base}/healthz`)).json()) as { failedSnapshots: number }).failedSnapshots >= 1, 15_000);
  const still = parseMetrics(await (await fetch(`${base}/metrics`)).text());
  assert.equal(still.get('renderbus_jobs{state="done"}'), 1);
  assert.equal(still.get('renderbus_hosts_up'), 1);
  assert.ok(monitor.running, monitor.output);
  assert.match(monitor.output, /snapshot incomplete/);
});
