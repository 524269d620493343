import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { DeliveryError, parseWebhookAllow, postWebhook, webhookRequest } from '../../actors/notifier/index.ts';
import { PROTOCOL_MAJOR } from '../../protocol/index.ts';
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
/** The monitor's access token, given to it in a file as an operator would. */
const TOKEN = 'web-monitor-test-token-0123456789abcdef';
const withToken = { 'x-renderbus-token': TOKEN };
/** This machine's first address that is not loopback (the test container has one), to be a peer from "another machine". */
const OTHER = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no chromium at ${CHROMIUM}: run 'sh tools/bootstrap.sh --test' (it installs Debian's chromium), or set CHROMIUM_PATH`);
  farm = await TestFarm.start();
  await farm.registry();
  await farm.scheduler();
  // one slot: the frames come one after the other (~0.7 s each), so the job is still running when the test pauses it
  await farm.renderServer('node-a', 1);
  const tokenFile = join(farm.dir, 'monitor-token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  // on every address, so that a peer that is not loopback can be tried
  ({ proc: monitor, base } = await farm.monitor(['--token-file', tokenFile, '--listen', '0.0.0.0', '--monitor-host', 'farm.studio.example']));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});
after(async () => {
  await browser?.close();
  await farm?.stop();
});

/** One HTTP request with full control of Host (`''`: none) and of the address it comes from (fetch sets Host itself). */
function raw(o: { path: string; method?: string; host?: string; headers?: Record<string, string>; body?: string; via?: string }): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({
      host: o.via ?? '127.0.0.1', ...(o.via ? { localAddress: o.via } : {}), port, path: o.path, method: o.method ?? 'GET', agent: false,
      // Host '' sends none at all
      setHost: false, headers: { ...(o.host !== '' ? { host: o.host ?? `127.0.0.1:${port}` } : {}), ...o.headers },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject).end(o.body);
  });
}

function cliJob(jobId: string): { state: string; counts: { done: number } } {
  const r = rb(farm, 'job', jobId, '--json');
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { state: string; counts: { done: number } };
}

test('web monitor - a job submitted with the CLI appears, progresses, shows thumbnails, and pausing it in the page pauses it', async () => {
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (m) => void (/Content Security Policy|Refused to/i.test(m.text()) && pageErrors.push(m.text())));
  // the link as `renderbus up` prints it: the token in the fragment, which no server sees
  await page.goto(`${base}/#token=${TOKEN}`);
  await page.locator('.conn[data-connected="true"]').waitFor({ timeout: 10_000 });
  assert.equal(new URL(page.url()).hash, '#/', 'the token left the address bar');
  assert.equal(await page.locator('[data-access]').count(), 0, 'no read-only notice: this page may act');

  const scene = await farm.writeScene('web.pov');
  const sub = rb(farm, 'submit', scene, '--frames', '1-60', '--chunk', '1', '--resolution', '160x120', '--name', 'web-shot', '--output', join(farm.dir, 'out-web'), '--json');
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
  await page.locator('.grid .frame').nth(59).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('.grid .frame').count(), 60);
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.grid img.thumb')].filter((i) => i.complete && i.naturalWidth > 0).length >= 2, null, { timeout: 30_000 });
  const thumb = await page.locator('.grid img.thumb').first().evaluate((i: HTMLImageElement) => ({ w: i.naturalWidth, h: i.naturalHeight }));
  assert.deepEqual(thumb, { w: 160, h: 120 }, 'a thumbnail of the 160×120 frame, fitted in 160 px');

  // a click on a done frame opens its stats and log
  await page.locator('.grid .frame[data-state="done"]').first().click();
  const panel = page.locator('.panel');
  await panel.locator('.stats').waitFor({ timeout: 10_000 });
  assert.match(await panel.locator('.log').innerText(), /POV-Ray|Render|Parse/i, 'the frame log is the renderer\'s output');

  // pause in the page → the scheduler paused it (asked through the CLI)
  // 60 frames of ~0.7 s: it still runs however slowly the CLI calls and the browser went (asked directly, not with one more CLI start)
  assert.notEqual((await farm.job(jobId)).state, 'done', 'the job must still run when the test pauses it');
  await page.locator('button[data-action="pause"]').click();
  await waitUntil('the job to be paused', async () => cliJob(jobId).state === 'paused', 10_000);
  await page.locator('.job-head .state[data-state="paused"]').waitFor({ timeout: 10_000 });
  const doneAtPause = cliJob(jobId).counts.done;
  assert.ok(doneAtPause < 60, `paused before the end (${doneAtPause} done)`);

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
  const post = (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json', ...withToken }) => fetch(`${base}${path}`, { method: 'POST', headers, body });
  const error = async (r: Response) => ((await r.json()) as { error: { code: string; message: string } }).error;

  let r = await post(`/api/jobs/${jobId}/cancel`, '{}', { 'content-type': 'text/plain', ...withToken });
  assert.equal(r.status, 415, 'a form-like post is no action');
  r = await post(`/api/jobs/${jobId}/cancel`, '{}', { 'content-type': 'application/json', origin: 'http://evil.example', ...withToken });
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
  r = await fetch(`${base}/api/jobs`, { method: 'DELETE', headers: withToken });
  assert.equal(r.status, 404);
  r = await fetch(`${base}/api/jobs/${jobId}`, { method: 'DELETE', headers: withToken });
  assert.equal(r.status, 405);
  assert.equal(cliJob(jobId).state, 'held', 'nothing above touched the job');

  // and a good one, for contrast: priority through the API is what the CLI then shows
  r = await post(`/api/jobs/${jobId}/priority`, '{"priority": 7}');
  assert.equal(r.status, 200);
  const viaCli = JSON.parse(rb(farm, 'job', jobId, '--json').stdout) as { priority: number };
  assert.equal(viaCli.priority, 7);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});

/** A server-sent event stream read message by message (`event: delta` only), for the live stream's tests. */
function liveReader(r: Response) {
  const reader = r.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    /** The next delta message: its id and its body. */
    async next(): Promise<{ id: string; body: { full: boolean; site: string; version: number; jobs: { jobId: string }[]; hosts: { host: string }[] } }> {
      for (;;) {
        const end = text.indexOf('\n\n');
        if (end >= 0) {
          const m = text.slice(0, end);
          text = text.slice(end + 2);
          if (!m.includes('event: delta')) continue;
          return { id: /^id: (.+)$/m.exec(m)![1]!, body: JSON.parse(/^data: (.+)$/m.exec(m)![1]!) };
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('the live stream ended');
        text += decoder.decode(value, { stream: true });
      }
    },
    cancel: () => reader.cancel(),
  };
}

/** `p`, or a failure naming what did not come within `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms: ${what}`)), Math.max(ms, 0))));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

test('web monitor - the live stream sends the whole view first, then what changed, and resumes from its last id', async () => {
  const jobOf = (what: string) => {
    const sub = rb(farm, 'submit', join(farm.dir, 'live.pov'), '--frames', '1', '--hold', '--name', what, '--output', join(farm.dir, `out-${what}`), '--json');
    assert.equal(sub.code, 0, sub.stderr);
    return (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  };
  await farm.writeScene('live.pov');
  // a held job changes no more: once the stream has shown it, a resumed stream must not send it again
  const before = jobOf('before-id');
  const ctl = new AbortController();
  const r = await fetch(`${base}/api/live`, { signal: ctl.signal });
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const live = liveReader(r);
  const first = await within(10_000, 'the first message', live.next());
  assert.equal(first.body.full, true);
  assert.equal(first.body.site, farm.site);
  assert.ok(first.body.hosts.some((h) => h.host === 'node-a'));
  // the id of the message that showed the held job (the first, unless the monitor's snapshot came later)
  let seen = first;
  while (!seen.body.jobs.some((j) => j.jobId === before)) seen = await within(10_000, 'the held job on the stream', live.next());
  ctl.abort();

  // while nobody listens: a new job. Reconnecting with the last id gets it, and not what came before the id
  const afterId = jobOf('after-id');
  const again = liveReader(await fetch(`${base}/api/live`, { headers: { 'last-event-id': seen.id } }));
  const resumed: Awaited<ReturnType<typeof again.next>>[] = [];
  const deadline = Date.now() + 15_000;
  while (!resumed.at(-1)?.body.jobs.some((j) => j.jobId === afterId)) {
    resumed.push(await within(deadline - Date.now(), 'the job submitted after the id, on the resumed stream', again.next()));
  }
  await again.cancel();
  assert.deepEqual(resumed.map((m) => m.body.full), resumed.map(() => false), 'a resumed stream sends what changed, not the whole view');
  assert.ok(resumed[0]!.body.version > Number(seen.id.split(':')[1]), 'it goes on from the id it was given');
  assert.deepEqual(resumed.flatMap((m) => m.body.jobs.map((j) => j.jobId)).filter((id) => id === before), [], 'the job shown before the id is not sent again');

  // a made-up id (another monitor's) gets the whole view, the held job in it
  const other = liveReader(await fetch(`${base}/api/live`, { headers: { 'last-event-id': 'deadbeef:3' } }));
  const whole = await within(10_000, 'the whole view', other.next());
  await other.cancel();
  assert.equal(whole.body.full, true);
  assert.ok(whole.body.jobs.some((j) => j.jobId === before));
  for (const id of [before, afterId]) assert.equal(rb(farm, 'cancel', id).code, 0);
});

test('web monitor - actions need the access token in a header; without it, or with a wrong one, nothing changes', async () => {
  const sub = rb(farm, 'submit', await farm.writeScene('guarded.pov'), '--frames', '1-2', '--hold', '--name', 'guarded', '--output', join(farm.dir, 'out-guarded'), '--json');
  assert.equal(sub.code, 0, sub.stderr);
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  const json = { 'content-type': 'application/json' };
  const attempts: [string, Record<string, string>][] = [
    ['no token', json],
    ['a wrong token', { ...json, 'x-renderbus-token': `${TOKEN}x` }],
    ['the read cookie (a cross-site form would send cookies)', { ...json, cookie: 'rb_read=anything' }],
    ['the token as a cookie', { ...json, cookie: `x-renderbus-token=${TOKEN}` }],
  ];
  for (const [what, headers] of attempts) {
    const r = await fetch(`${base}/api/jobs/${jobId}/priority`, { method: 'POST', headers, body: '{"priority": 3}' });
    assert.equal(r.status, 401, what);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'RB_TOKEN_REQUIRED', what);
  }
  const viaCli = () => JSON.parse(rb(farm, 'job', jobId, '--json').stdout) as { priority: number; state: string };
  assert.notEqual(viaCli().priority, 3, 'no refused request changed the priority');
  for (const auth of [withToken, { authorization: `Bearer ${TOKEN}` }]) {
    const ok = await fetch(`${base}/api/jobs/${jobId}/priority`, { method: 'POST', headers: { ...json, ...auth }, body: '{"priority": 3}' });
    assert.equal(ok.status, 200);
  }
  assert.equal(viaCli().priority, 3);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});

test('web monitor - DNS rebinding: a request under any other Host is refused before routing, even with the token', async () => {
  const sub = rb(farm, 'submit', await farm.writeScene('rebind.pov'), '--frames', '1', '--hold', '--name', 'rebind', '--output', join(farm.dir, 'out-rebind'), '--json');
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  const { port } = new URL(base);
  for (const host of [`rebind.evil.example:${port}`, 'rebind.evil.example', `127.0.0.1:${Number(port) + 1}`, '']) {
    const action = await raw({ path: `/api/jobs/${jobId}/priority`, method: 'POST', host, headers: { 'content-type': 'application/json', ...withToken }, body: '{"priority": 9}' });
    // no Host at all: node's server answers 400 itself
    const refused = host === '' ? 400 : 421;
    assert.equal(action.status, refused, `POST with Host '${host}'`);
    if (host !== '') assert.match(action.body, /RB_HOST_REFUSED/);
    for (const path of ['/', '/api/farm', '/api/live', '/metrics', '/nowhere']) assert.equal((await raw({ path, host })).status, refused, `GET ${path} with Host '${host}'`);
  }
  assert.notEqual((JSON.parse(rb(farm, 'job', jobId, '--json').stdout) as { priority: number }).priority, 9, 'the rebinding page changed nothing');
  // the names it does answer to
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'farm.studio.example', `farm.studio.example:${port}`]) assert.equal((await raw({ path: '/api/farm', host })).status, 200, host);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});

test('web monitor - every answer carries the security headers; the page allows only its own scripts and its import map', async () => {
  const answers = await Promise.all([raw({ path: '/' }), raw({ path: '/app.js' }), raw({ path: '/api/farm' }), raw({ path: '/metrics' }), raw({ path: '/nowhere' }), raw({ path: '/api/jobs/x/pause', method: 'POST' }), raw({ path: '/', host: 'evil.example' })]);
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 404, 401, 421]);
  for (const a of answers) {
    assert.equal(a.headers['x-frame-options'], 'DENY');
    assert.equal(a.headers['x-content-type-options'], 'nosniff');
    assert.equal(a.headers['referrer-policy'], 'no-referrer');
    assert.match(String(a.headers['content-security-policy']), /default-src 'self'.*frame-ancestors 'none'/);
  }
  assert.match(String(answers[0]!.headers['content-security-policy']), /script-src 'self' 'sha256-[A-Za-z0-9+/]+=*';/, 'the inline import map by its hash, no unsafe-inline');
  // the stream answers itself: it gets them too
  const ctl = new AbortController();
  const live = await fetch(`${base}/api/live`, { signal: ctl.signal });
  assert.equal(live.headers.get('x-frame-options'), 'DENY');
  ctl.abort();
});

test('web monitor - from another machine, everything but the page itself needs the token', { skip: OTHER === undefined && 'this machine has no address besides loopback' }, async () => {
  const { port } = new URL(base);
  const host = `${OTHER}:${port}`; // this machine's own address: a Host the monitor answers to
  const from = (path: string, headers: Record<string, string> = {}) => raw({ path, host, headers, via: OTHER });
  for (const path of ['/api/farm', '/api/live', '/api/hosts', '/metrics', '/healthz', '/api/access', '/nowhere']) {
    const r = await from(path);
    assert.equal(r.status, 401, `GET ${path} from ${OTHER}`);
    assert.match(r.body, /RB_TOKEN_REQUIRED/);
  }
  assert.equal((await from('/')).status, 200, 'the page loads, then asks for the token');
  assert.equal((await from('/app.js')).status, 200);
  assert.equal((await from('/metrics', { authorization: `Bearer ${TOKEN}` })).status, 200, 'Prometheus with the token');
  // the page shows the token once; the cookie it gets lets EventSource and images read, not act
  const access = await from('/api/access', withToken);
  assert.equal(access.status, 200);
  assert.deepEqual(JSON.parse(access.body), { site: farm.site, actions: true, loopback: false });
  const cookie = String(access.headers['set-cookie']).split(';')[0]!;
  assert.match(String(access.headers['set-cookie']), /^rb_read=[\w-]+; Path=\/; HttpOnly; SameSite=Strict$/);
  assert.equal((await from('/api/farm', { cookie })).status, 200);
  assert.equal((await raw({ path: '/api/jobs/x/pause', method: 'POST', host, via: OTHER, headers: { cookie, 'content-type': 'application/json' }, body: '{}' })).status, 401);
  // from loopback, reading is free: the read-only view
  assert.deepEqual(JSON.parse((await raw({ path: '/api/access' })).body), { site: farm.site, actions: false, loopback: true });
});

test('web monitor - without a token the page is a read-only view that says how to get one', async () => {
  const page = await browser.newPage();
  const sub = rb(farm, 'submit', await farm.writeScene('ro.pov'), '--frames', '1-2', '--hold', '--name', 'read-only', '--output', join(farm.dir, 'out-ro'), '--json');
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  await page.goto(`${base}/#/job/${jobId}`);
  await page.locator('.conn[data-connected="true"]').waitFor({ timeout: 10_000 });
  await page.locator(`[data-job-page="${jobId}"]`).waitFor({ timeout: 10_000 });
  const notice = page.locator('[data-access="read-only"]');
  assert.match(await notice.innerText(), /Read-only view.*#token=.*<data>\/monitor-token/s);
  assert.equal(await page.locator('button[data-action]').count(), 0, 'no action buttons');
  // a link with a wrong token: refused, said so, still the read-only view
  await page.goto(`${base}/#token=not-the-token`);
  await page.locator('[data-access="read-only"]', { hasText: 'The token in the link was refused' }).waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('renderbus-token')), null);
  await page.close();
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});

test('web monitor - a browser on another machine: without the token only the notice, with it the live view (its stream and images ride the read cookie)', { skip: OTHER === undefined && 'this machine has no address besides loopback' }, async () => {
  const remote = `http://${OTHER}:${new URL(base).port}`;
  const page = await browser.newPage();
  await page.goto(`${remote}/`);
  await page.locator('[data-access="needs-token"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('table.jobs').count(), 0, 'nothing of the farm');
  await page.goto(`${remote}/#token=${TOKEN}`);
  await page.locator('.conn[data-connected="true"]').waitFor({ timeout: 10_000 });
  await page.locator('[data-access]').waitFor({ state: 'detached', timeout: 10_000 });
  assert.equal(await page.locator('.site').innerText(), farm.site, 'the live stream came through');
  await page.close();
});

test('web monitor - a webhook aimed at the monitor cannot cancel a job, even where the site allows webhooks to 127.0.0.1', async () => {
  const sub = rb(farm, 'submit', await farm.writeScene('victim.pov'), '--frames', '1', '--hold', '--name', 'victim', '--output', join(farm.dir, 'out-victim'), '--json');
  const jobId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  // what the notifier sends for another job whose author wrote the monitor's cancel URL as its webhook
  const hook = `${base}/api/jobs/${jobId}/cancel`;
  const req = webhookRequest({
    id: 'x.done.1', channel: 'webhook', to: [hook], trigger: 'done',
    event: { v: PROTOCOL_MAJOR, jobId: 'x', event: 'done', at: 1, job: { jobId: 'x', name: 'x', user: 'eve', group: 'x', project: 'x', priority: 1, state: 'done', submittedAt: 1, outputDir: '/', counts: { total: 1, queued: 0, running: 0, done: 1, failed: 0 } } },
  }, farm.site, 'k', Date.now());
  const outcome = async (allow: string[]) => postWebhook(hook, req, { allow: parseWebhookAllow(allow) }).then(() => 'sent', (e: DeliveryError) => e.message);
  assert.match(await outcome([]), /^refused: 127\.0\.0\.1 is a loopback address/, 'refused by its address');
  assert.equal(await outcome(['127.0.0.1']), 'HTTP 401: refused', 'allowed there, the monitor still wants its token');
  assert.equal(cliJob(jobId).state, 'held', 'not cancelled');
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});
