import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { SMTPServer } from 'smtp-server';
import { codecs, subjects, type NotifyEvent, type WebhookPayload } from '../../protocol/index.ts';
import { CLI, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

const SECRET = 'correct horse battery staple';

/** A webhook receiver as a studio would write one: checks the signature, answers 500 to each id's first attempt. */
class HookReceiver {
  readonly posts: { id: string; attempt: number; signed: boolean; timestamp: number; body: WebhookPayload }[] = [];
  private readonly attempts = new Map<string, number>();
  private constructor(private readonly server: Server) {}
  static async start(): Promise<HookReceiver> {
    const server = createServer();
    const r = new HookReceiver(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`);
        const given = Buffer.from(String(req.headers['x-renderbus-signature'] ?? ''));
        const signed = given.length === expected.length && timingSafeEqual(given, expected);
        const id = String(req.headers['x-renderbus-id']);
        const attempt = (r.attempts.get(id) ?? 0) + 1;
        r.attempts.set(id, attempt);
        r.posts.push({ id, attempt, signed, timestamp: Number(req.headers['x-renderbus-timestamp']), body: codecs.webhookPayload.check(JSON.parse(raw.toString('utf8'))) });
        res.writeHead(!signed ? 401 : attempt === 1 ? 500 : 204).end();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return r;
  }
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}/renderbus`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

interface Mail {
  to: string[];
  headers: Record<string, string>;
  raw: string;
}

/** A real SMTP server in this process (smtp-server), keeping every message it is given. */
async function startSmtp(): Promise<{ url: string; mails: Mail[]; stop(): Promise<void> }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), headers: headersOf(raw), raw });
        callback();
      });
    },
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const port = (server.server.address() as { port: number }).port;
  return { url: `smtp://127.0.0.1:${port}`, mails, stop: () => new Promise<void>((r) => server.close(() => r())) };
}

/** The top-level headers of a raw message, unfolded, names lower-cased. */
function headersOf(raw: string): Record<string, string> {
  const head = raw.split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]+/g, ' ');
  return Object.fromEntries(head.split(/\r?\n/).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
}

/** The MIME parts of a multipart message: each one's headers and decoded body. */
function partsOf(raw: string): { headers: Record<string, string>; body: Buffer }[] {
  const boundary = /boundary="?([^";\s]+)"?/.exec(headersOf(raw)['content-type'] ?? '')?.[1];
  if (!boundary) return [{ headers: headersOf(raw), body: decodeBody(raw.split(/\r?\n\r?\n/).slice(1).join('\r\n\r\n'), headersOf(raw)) }];
  return raw
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((p) => {
      const [head, ...rest] = p.replace(/^\r?\n/, '').split(/\r?\n\r?\n/);
      const headers = headersOf(`${head}\r\n\r\n`);
      return { headers, body: decodeBody(rest.join('\r\n\r\n'), headers) };
    });
}

function decodeBody(text: string, headers: Record<string, string>): Buffer {
  const enc = (headers['content-transfer-encoding'] ?? '').toLowerCase();
  if (enc === 'base64') return Buffer.from(text.replace(/\s+/g, ''), 'base64');
  if (enc === 'quoted-printable') {
    const s = text.replace(/=\r?\n/g, '');
    return Buffer.from(s.replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  }
  return Buffer.from(text);
}

const textOf = (m: Mail) => partsOf(m.raw).find((p) => (p.headers['content-type'] ?? '').startsWith('text/plain'))!.body.toString('utf8').replace(/\r\n/g, '\n');

/** A port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

let farm: TestFarm;
let hooks: HookReceiver;
let smtp: Awaited<ReturnType<typeof startSmtp>>;
const events: NotifyEvent[] = [];
let samplePng: string;

before(async () => {
  [farm, hooks, smtp] = await Promise.all([TestFarm.start(), HookReceiver.start(), startSmtp()]);
  farm.nc.subscribe(subjects.allNotifyEvents(farm.site), { callback: (_e, m) => void events.push(codecs.notifyEvent.decode(m.data)) });
  samplePng = join(farm.dir, 'sample.png');
  await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 60, b: 30 } } }).png().toFile(samplePng);
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('node-a', 1);
});
after(async () => {
  await farm?.stop();
  await Promise.all([hooks?.stop(), smtp?.stop()]);
});

/**
 * A `renderbus notifier` process, stopped when the test ends (two would send everything twice).
 * The receivers are on 127.0.0.1, which webhooks may reach only when allowed: `allow` (default
 * all of 127.0.0.1) becomes --webhook-allow.
 */
async function startNotifier(t: { after(fn: () => Promise<void>): void }, args: string[], allow: string[] = ['127.0.0.1']): Promise<ActorProcess> {
  const p = await farm.spawnActor('notifier', ['notifier', ...args, ...allow.flatMap((a) => ['--webhook-allow', a])]);
  t.after(() => p.kill('SIGTERM'));
  await waitUntil('the notifier to start', () => p.output.includes('"msg":"notifier started"') || !p.running, 20_000);
  assert.ok(p.running, p.output);
  return p;
}

/** Events of one job, once `n` of them are in. */
const eventsOf = (jobId: string, n: number, timeoutMs = 20_000) =>
  waitUntil(`${n} notify events of ${jobId}`, () => {
    const mine = events.filter((e) => e.jobId === jobId);
    return mine.length >= n ? mine : undefined;
  }, timeoutMs).catch((e: Error) => assert.fail(`${e.message}: ${JSON.stringify(events)}\n${farm.logs()}`));

/**
 * Proof that the notifier read on: a one-frame job with a webhook at its end, submitted now; resolves
 * once the notifier told it (its event is in). Whatever came on the stream before was handled.
 */
async function laterJob(name: string): Promise<string> {
  const jobId = await farm.submit({ name, scene: await farm.writeScene(), renderer: 'command', command: 'true', frames: '1', output: { dir: join(farm.dir, `out-${name}`) }, notify: [hooks.url] });
  await eventsOf(jobId, 1);
  return jobId;
}

test('notify - progress and the end go out by signed webhook (retried after a 500) and by email with a thumbnail; each is an event', async (t) => {
  const secretFile = join(farm.dir, 'webhook-secret');
  await writeFile(secretFile, `${SECRET}\n`);
  const notifier = await startNotifier(t, ['--smtp', smtp.url, '--smtp-from', 'farm@studio.example', '--webhook-secret-file', secretFile]);

  const scene = await farm.writeScene();
  const out = join(farm.dir, 'out-notify');
  const jobId = await farm.submit({
    name: 'shot010', scene, renderer: 'command', frames: '1-4', output: { dir: out, pattern: 'f_####.png' },
    command: `sh -c 'sleep 0.4; cp ${samplePng} {output}'`,
    notify: { webhooks: [hooks.url], email: ['ann@studio.example', 'bob@studio.example'], everyPercent: 50 },
  });
  const failedId = await farm.submit({
    name: 'broken', scene, renderer: 'command', frames: '1-2', maxAttempts: 1, output: { dir: join(farm.dir, 'out-broken') },
    command: `sh -c 'echo no licence for frame {frame} >&2; exit 3'`,
    notify: { email: ['ann@studio.example'] },
  });
  await farm.waitJob(jobId, 'done', 30_000);
  await farm.waitJob(failedId, 'failed', 30_000);

  // progress at 50 % and the end, each by webhook and by email
  const mine = await eventsOf(jobId, 4);
  const summary = (e: NotifyEvent) => [e.trigger, e.channel, e.event, e.attempts];
  assert.deepEqual(mine.map(summary).sort(), [
    ['done', 'email', 'sent', 1],
    ['done', 'webhook', 'sent', 2],
    ['progress', 'email', 'sent', 1],
    ['progress', 'webhook', 'sent', 2],
  ].sort());
  const hookEvent = mine.find((e) => e.channel === 'webhook')!;
  assert.deepEqual(hookEvent.to, [new URL(hooks.url).origin], 'only the origin of a webhook goes on the bus');
  const progressMail = mine.find((e) => e.trigger === 'progress' && e.channel === 'email')!;
  assert.equal(progressMail.percent, 50);
  assert.equal(progressMail.thumbnail, true);
  assert.match(progressMail.sample!.output, new RegExp(`^${out}/f_000[123]\\.png$`));

  // the receiver: every POST signed, each id refused once (500) and then taken, bodies that say what happened
  const posts = hooks.posts.filter((p) => p.body.jobId === jobId);
  assert.ok(posts.every((p) => p.signed), 'every POST verifies with the secret');
  assert.deepEqual(posts.map((p) => [p.body.event, p.attempt]).sort(), [['done', 1], ['done', 2], ['progress', 1], ['progress', 2]]);
  for (const p of posts) {
    assert.equal(p.id, p.body.id);
    assert.equal(p.timestamp, p.body.sentAt);
    assert.ok(Math.abs(Date.now() - p.body.sentAt) < 60_000, 'sentAt is now: a receiver can refuse old ones');
  }
  const done = posts.find((p) => p.body.event === 'done')!.body;
  assert.equal(done.site, farm.site);
  assert.equal(done.job.state, 'done');
  assert.deepEqual([done.job.counts.done, done.job.counts.total], [4, 4]);
  const progress = posts.find((p) => p.body.event === 'progress')!.body;
  assert.equal(progress.percent, 50);
  assert.ok(progress.sample && progress.sample.output.startsWith(out));

  // the emails, as the SMTP server received them
  const mailsOf = (subject: RegExp) => smtp.mails.filter((m) => subject.test(m.headers.subject ?? ''));
  const [doneMail] = mailsOf(/^\[renderbus\] shot010 is done: 4 frames rendered$/);
  assert.ok(doneMail, `a done email: ${smtp.mails.map((m) => m.headers.subject).join(' | ')}`);
  assert.deepEqual(doneMail.to, ['ann@studio.example', 'bob@studio.example']);
  assert.match(doneMail.headers.from!, /farm@studio\.example/);
  assert.match(textOf(doneMail), new RegExp(`Job shot010 \\(${jobId}\\) is done: all 4 frames rendered\\.`));
  assert.match(textOf(doneMail), new RegExp(`Frames are in: ${out}`));

  // at 2 of 4 frames, or at 3 when the scheduler's progress event of frame 2 was held back (at most one each 250 ms)
  const [progressMessage] = mailsOf(/^\[renderbus\] shot010 is 50% rendered \([23] of 4 frames\)$/);
  assert.ok(progressMessage, 'a progress email');
  assert.match(textOf(progressMessage), /A recent frame, [123] \(thumbnail attached\):/);
  assert.match(textOf(progressMessage), new RegExp(`Stop it early: renderbus cancel ${jobId}`));
  const image = partsOf(progressMessage.raw).find((p) => (p.headers['content-type'] ?? '').startsWith('image/jpeg'));
  assert.ok(image, 'a JPEG attached');
  assert.match(image.headers['content-disposition'] ?? '', /attachment; filename=frame-[123]\.jpg/);
  const meta = await sharp(image.body).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 320, 240], 'a 320 px thumbnail of the 640x480 frame');

  const [failedMail] = mailsOf(/^\[renderbus\] broken failed: 2 of 2 frames failed$/);
  assert.ok(failedMail, 'a failed email');
  assert.match(textOf(failedMail), /Failed frames:\n {2}frame 1: .*no licence for frame 1/);
  assert.match(textOf(failedMail), /\n {2}frame 2: /);
  assert.deepEqual((await eventsOf(failedId, 1)).map(summary), [['failed', 'email', 'sent', 1]]);

  await notifier.kill('SIGTERM');
  assert.equal(notifier.proc.exitCode, 0, notifier.output);
});

test('notify - an unreachable webhook and SMTP server break nothing: each is given up and reported as an event', async (t) => {
  const notifier = await startNotifier(t, ['--smtp', `smtp://127.0.0.1:${await closedPort()}`, '--notify-attempts', '2']);
  const scene = await farm.writeScene();
  const deadHook = `http://127.0.0.1:${await closedPort()}/hook?token=secret`;
  const jobId = await farm.submit({
    name: 'unheard', scene, renderer: 'command', command: 'true', frames: '1-2', output: { dir: join(farm.dir, 'out-unheard') },
    notify: { webhooks: [deadHook], email: ['ann@studio.example'] },
  });
  await farm.waitJob(jobId, 'done', 30_000);
  const mine = await eventsOf(jobId, 2);
  assert.deepEqual(mine.map((e) => [e.channel, e.event, e.attempts]).sort(), [['email', 'failed', 2], ['webhook', 'failed', 2]]);
  assert.match(mine.find((e) => e.channel === 'webhook')!.error!, /ECONNREFUSED/);
  assert.match(mine.find((e) => e.channel === 'email')!.error!, /ECONNREFUSED|ESOCKET|ECONNECTION/);
  assert.doesNotMatch(JSON.stringify(mine), /token=secret/, "a webhook's token stays off the bus");
  assert.ok(notifier.running, 'the notifier goes on');
  assert.equal((await farm.job(jobId)).state, 'done', 'the job is not affected');
  await notifier.kill('SIGTERM');
});

test(
  'notify - the original array form: one signed POST per URL at the end, from the notifier alone',
  async (t) => {
    const secretFile = join(farm.dir, 'webhook-secret');
    await writeFile(secretFile, SECRET);
    await startNotifier(t, ['--webhook-secret-file', secretFile]);
    const scene = await farm.writeScene();
    const jobId = await farm.submit({ name: 'legacy', scene, renderer: 'command', command: 'true', frames: '1-3', output: { dir: join(farm.dir, 'out-legacy') }, notify: [hooks.url] });
    await farm.waitJob(jobId, 'done', 30_000);
    assert.deepEqual((await eventsOf(jobId, 1)).map((e) => [e.trigger, e.channel, e.event, e.attempts]), [['done', 'webhook', 'sent', 2]]);
    await laterJob('legacy-after'); // a second POST of this job, from anyone, would have come before the later job's
    const posts = hooks.posts.filter((p) => p.body.jobId === jobId);
    assert.deepEqual(posts.map((p) => [p.body.event, p.attempt, p.signed]), [['done', 1, true], ['done', 2, true]], 'nobody else posts it');
  },
);

test('notify - a job that ends while no notifier runs is told when one starts, and only once', async (t) => {
  const secretFile = join(farm.dir, 'webhook-secret');
  await writeFile(secretFile, SECRET);
  const first = await startNotifier(t, ['--webhook-secret-file', secretFile]); // the durable consumer exists from here on
  await first.kill('SIGTERM');

  const scene = await farm.writeScene();
  const jobId = await farm.submit({ name: 'unattended', scene, renderer: 'command', command: 'true', frames: '1-2', output: { dir: join(farm.dir, 'out-unattended') }, notify: [hooks.url] });
  await farm.waitJob(jobId, 'done', 30_000);
  // (a POST from anyone but a notifier would also show in the exact list checked below)
  assert.equal(hooks.posts.filter((p) => p.body.jobId === jobId).length, 0, 'no notifier ran: nobody posted yet');

  const second = await startNotifier(t, ['--webhook-secret-file', secretFile]);
  assert.deepEqual((await eventsOf(jobId, 1)).map((e) => [e.trigger, e.channel, e.event]), [['done', 'webhook', 'sent']]);
  const posts = () => hooks.posts.filter((p) => p.body.jobId === jobId).map((p) => [p.body.event, p.attempt]);
  assert.deepEqual(posts(), [['done', 1], ['done', 2]], 'told from the event stream once a notifier came');
  await second.kill('SIGTERM');

  // the event was acknowledged: the next notifier does not tell it again
  await startNotifier(t, ['--webhook-secret-file', secretFile]);
  // it reads the stream in order: once it told a later job's end, it has passed this one's
  await laterJob('unattended-after');
  assert.deepEqual(posts(), [['done', 1], ['done', 2]]);
});

test('notify - a webhook to this machine is refused unless the site allows it: a failed event says why, nothing is sent, nothing retried', async (t) => {
  const secretFile = join(farm.dir, 'webhook-secret');
  await writeFile(secretFile, SECRET);
  const port = new URL(hooks.url).port;
  const strict = await startNotifier(t, ['--webhook-secret-file', secretFile], []);
  const scene = await farm.writeScene();
  const local = `http://localhost:${port}/renderbus?token=secret`; // a name that resolves to loopback
  const refusedId = await farm.submit({ name: 'inward', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(farm.dir, 'out-inward') }, notify: [hooks.url, local] });
  await farm.waitJob(refusedId, 'done', 30_000);
  const refused = await eventsOf(refusedId, 2);
  assert.deepEqual(refused.map((e) => [e.channel, e.event, e.attempts]), [['webhook', 'failed', 1], ['webhook', 'failed', 1]], 'given up at the first attempt');
  const errors = refused.map((e) => e.error!).sort();
  assert.match(errors[0]!, new RegExp(`^refused: 127\\.0\\.0\\.1 is a loopback address; the site allows such webhooks with --webhook-allow 127\\.0\\.0\\.1:${port} \\(or RB_WEBHOOK_ALLOW\\)$`));
  assert.match(errors[1]!, /^refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address/);
  assert.doesNotMatch(JSON.stringify(refused), /token=secret/);
  assert.equal(hooks.posts.filter((p) => p.body.jobId === refusedId).length, 0, 'nothing reached the listener');
  await strict.kill('SIGTERM');

  // allowed (that address and port only): the same receiver gets it, signed
  await startNotifier(t, ['--webhook-secret-file', secretFile], [`127.0.0.1:${port}`]);
  const allowedId = await farm.submit({ name: 'allowed', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(farm.dir, 'out-allowed') }, notify: [hooks.url] });
  await farm.waitJob(allowedId, 'done', 30_000);
  assert.deepEqual((await eventsOf(allowedId, 1)).map((e) => [e.event, e.attempts]), [['sent', 2]]);
  const posts = hooks.posts.filter((p) => p.body.jobId === allowedId);
  assert.ok(posts.length === 2 && posts.every((p) => p.signed), 'both attempts signed');
});

test('notify - renderbus submit refuses a job file with a bad notify, naming the field', async () => {
  const scene = await farm.writeScene();
  const file = join(farm.dir, 'bad-notify.json');
  await writeFile(file, JSON.stringify({ scene, frames: '1-2', notify: { email: ['ann@studio.example'], on: ['done', 'progress'] } }));
  const p = spawn(process.execPath, [CLI, 'submit', file, '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(p, 'exit')) as [number];
  assert.equal(code, 2, stderr);
  assert.match(stderr, /job file .*bad-notify\.json: \/notify\/on: 'progress' needs notify\.everyPercent/);
});
