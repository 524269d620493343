import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { rb, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

// The web monitor end to end: a real farm (nats-server, registry, scheduler, a render server
// running POV-Ray), `renderbus monitor` serving the page, and Debian's chromium driven by
// playwright-core. The job is submitted and checked with the CLI, steered in the browser.

/** Debian's chromium (tools/bootstrap.sh --test installs it); CHROMIUM_PATH overrides. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let farm: TestFarm;
let monitor: ActorProcess;
let base: string;
let browser: Browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no chromium at ${CHROMIUM}: run 'sh tools/bootstrap.sh --test' (it installs Debian's chromium), or set CHROMIUM_PATH`);
  farm = await TestFarm.start();
  await farm.registry();
  await farm.scheduler();
  // one slot: the frames come one after the other (~0.7 s each), so the job is still running when the test pauses it
  await farm.renderServer('node-a', 1);
  ({ proc: monitor, base } = await farm.monitor());
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});
after(async () => {
  await browser?.close();
  await farm?.stop();
});

function cliJob(jobId: string): { state: string; counts: { done: number } } {
  const r = rb(farm, 'job', jobId, '--json');
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { state: string; counts: { done: number } };
}

test('web monitor - a job submitted with the CLI appears, progresses, shows thumbnails, and pausing it in the page pauses it', async () => {
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(base);
  await page.locator('.conn[data-connected="true"]').waitFor({ timeout: 10_000 });

  const scene = await farm.writeScene('web.pov');
  const sub = rb(farm, 'submit', scene, '--frames', '1-20', '--chunk', '1', '--resolution', '160x120', '--name', 'web-shot', '--output', join(farm.dir, 'out-web'), '--json');
  assert.equal(sub.code, 0, sub.stderr);
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;

  // it appears in the jobs list and progresses there, without a reload
  const row = page.locator(`tr[data-job="${jobId}"]`);
  await row.waitFor({ timeout: 10_000 });
  await page.waitForFunction((id) => Number(document.querySelector(`tr[data-job="${id}"] td[data-done]`)?.getAttribute('data-done')) >= 1, jobId, { timeout: 30_000 });

  // its page: the frame grid fills in, done frames show their thumbnails
  await row.locator('a').first().click();
  await page.locator(`[data-job-page="${jobId}"]`).waitFor();
  // the header shows at once from the live stream; the grid once the job's frames came from the scheduler
  await page.locator('.grid .frame').nth(19).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('.grid .frame').count(), 20);
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.grid img.thumb')].filter((i) => i.complete && i.naturalWidth > 0).length >= 2, null, { timeout: 30_000 });
  const thumb = await page.locator('.grid img.thumb').first().evaluate((i: HTMLImageElement) => ({ w: i.naturalWidth, h: i.naturalHeight }));
  assert.deepEqual(thumb, { w: 160, h: 120 }, 'a thumbnail of the 160×120 frame, fitted in 160 px');

  // a click on a done frame opens its stats and log
  await page.locator('.grid .frame[data-state="done"]').first().click();
  const panel = page.locator('.panel');
  await panel.locator('.stats').waitFor({ timeout: 10_000 });
  assert.match(await panel.locator('.log').innerText(), /POV-Ray|Render|Parse/i, 'the frame log is the renderer\'s output');

  // pause in the page → the scheduler paused it (asked through the CLI)
  assert.notEqual(cliJob(jobId).state, 'done', 'the job must still run when the test pauses it');
  await page.locator('button[data-action="pause"]').click();
  await waitUntil('the job to be paused', async () => cliJob(jobId).state === 'paused', 10_000);
  await page.locator('.job-head .state[data-state="paused"]').waitFor({ timeout: 10_000 });
  const doneAtPause = cliJob(jobId).counts.done;
  assert.ok(doneAtPause < 20, `paused before the end (${doneAtPause} done)`);

  // the queue shows it, paused, with why it waits; hosts and the timeline show the slot and what ran on it
  await page.goto(`${base}/#/queue`);
  const queued = page.locator(`table.queue tr[data-job="${jobId}"]`);
  await queued.waitFor({ timeout: 10_000 });
  assert.match(await queued.innerText(), /paused/);
  await page.goto(`${base}/#/hosts`);
  await page.locator('[data-host="node-a"] [data-slot="node-a/0"]').waitFor({ timeout: 10_000 });
  await page.goto(`${base}/#/timeline`);
  await page.waitForFunction(() => document.querySelectorAll('rect[data-span]').length >= 2, null, { timeout: 10_000 });

  // resume from the page too, then let the CLI end it
  await page.goto(`${base}/#/job/${jobId}`);
  await page.locator('button[data-action="resume"]:not([disabled])').click();
  await waitUntil('the job to resume', async () => cliJob(jobId).state !== 'paused', 10_000);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
  await page.locator('.job-head .state[data-state="cancelled"]').waitFor({ timeout: 10_000 });
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test('web monitor - the API refuses bad requests with a clear error and changes nothing', async () => {
  const sub = rb(farm, 'submit', await farm.writeScene('held.pov'), '--frames', '1-3', '--hold', '--name', 'held', '--output', join(farm.dir, 'out-held'), '--json');
  assert.equal(sub.code, 0, sub.stderr);
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  const post = (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) => fetch(`${base}${path}`, { method: 'POST', headers, body });
  const error = async (r: Response) => ((await r.json()) as { error: { code: string; message: string } }).error;

  let r = await post(`/api/jobs/${jobId}/cancel`, '{}', { 'content-type': 'text/plain' });
  assert.equal(r.status, 415, 'a form-like post is no action');
  r = await post(`/api/jobs/${jobId}/cancel`, '{}', { 'content-type': 'application/json', origin: 'http://evil.example' });
  assert.equal(r.status, 403);
  assert.match((await error(r)).message, /evil\.example/);
  r = await post(`/api/jobs/${jobId}/explode`, '{}');
  assert.equal(r.status, 400);
  assert.match((await error(r)).message, /'explode' is not an action/);
  r = await post(`/api/jobs/${jobId}/priority`, '{"priority": 5000}');
  assert.equal(r.status, 400);
  assert.match((await error(r)).message, /priority: 5000/);
  r = await post(`/api/jobs/${jobId}/priority`, '{"priority": ');
  assert.equal(r.status, 400);
  assert.match((await error(r)).message, /not JSON/);
  r = await post('/api/jobs/nosuchjob/pause', '{}');
  assert.equal(r.status, 404);
  assert.equal((await error(r)).code, 'RB_UNKNOWN_JOB');
  r = await fetch(`${base}/api/jobs/${jobId}/frames/2/thumbnail`);
  assert.equal(r.status, 404, 'no thumbnail of a frame not rendered');
  r = await fetch(`${base}/api/jobs/${jobId}/frames/99`);
  assert.equal(r.status, 400);
  assert.match((await error(r)).message, /has no frame 99/);
  r = await fetch(`${base}/api/jobs/${jobId}/frames/x1`);
  assert.equal(r.status, 400);
  r = await fetch(`${base}/api/jobs`, { method: 'DELETE' });
  assert.equal(r.status, 404);
  r = await fetch(`${base}/api/jobs/${jobId}`, { method: 'DELETE' });
  assert.equal(r.status, 405);
  assert.equal(cliJob(jobId).state, 'held', 'nothing above touched the job');

  // and a good one, for contrast: priority through the API is what the CLI then shows
  r = await post(`/api/jobs/${jobId}/priority`, '{"priority": 7}');
  assert.equal(r.status, 200);
  const viaCli = JSON.parse(rb(farm, 'job', jobId, '--json').stdout) as { priority: number };
  assert.equal(viaCli.priority, 7);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});

test('web monitor - the live stream sends the whole view first, then what changed, and resumes from its last id', async () => {
  const ctl = new AbortController();
  const r = await fetch(`${base}/api/live`, { signal: ctl.signal });
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = r.body!.getReader();
  let text = '';
  const decoder = new TextDecoder();
  const messages = () => text.split('\n\n').filter((m) => m.includes('event: delta'));
  await waitUntil('the first message', async () => {
    const { value } = await reader.read();
    text += decoder.decode(value);
    return messages().length >= 1;
  }, 10_000);
  const first = messages()[0]!;
  const id = /^id: (.+)$/m.exec(first)![1]!;
  const body = JSON.parse(/^data: (.+)$/m.exec(first)![1]!) as { full: boolean; site: string; hosts: { host: string }[] };
  assert.equal(body.full, true);
  assert.equal(body.site, farm.site);
  assert.ok(body.hosts.some((h) => h.host === 'node-a'));
  ctl.abort();

  // reconnecting with the last id: not everything again
  const again = await fetch(`${base}/api/live`, { headers: { 'last-event-id': id } });
  const r2 = again.body!.getReader();
  let t2 = '';
  const deadline = Date.now() + 3_000;
  while (!t2.includes('event: delta') && Date.now() < deadline) {
    const next = await Promise.race([r2.read(), new Promise<null>((res) => setTimeout(() => res(null), 500))]);
    if (next && next.value) t2 += decoder.decode(next.value);
  }
  await r2.cancel();
  if (t2.includes('event: delta')) assert.equal((JSON.parse(/^data: (.+)$/m.exec(t2)![1]!) as { full: boolean }).full, false);
  // a made-up id (another monitor's) gets the whole view
  const other = await fetch(`${base}/api/live`, { headers: { 'last-event-id': 'deadbeef:3' } });
  const r3 = other.body!.getReader();
  let t3 = '';
  while (!t3.includes('event: delta')) t3 += decoder.decode((await r3.read()).value);
  await r3.cancel();
  assert.equal((JSON.parse(/^data: (.+)$/m.exec(t3)![1]!) as { full: boolean }).full, true);
});
