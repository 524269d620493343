import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import {
  backoffMs, backoffSchedule, DEFAULT_RETRY, DeliveryError, emailText, parseWebhookAllow, postWebhook, signBody, smtpFailure, verifySignature, webhookOrigin, webhookRequest,
  type Notification,
} from '../../actors/notifier/index.ts';
import { codecs, PROTOCOL_MAJOR, type JobEvent } from '../../protocol/index.ts';

function aNotification(over: Partial<Notification> = {}, failures?: JobEvent['failures']): Notification {
  const event: JobEvent = {
    v: PROTOCOL_MAJOR,
    jobId: 'j1',
    event: over.trigger ?? 'done',
    at: 1_700_000_000_000,
    job: {
      jobId: 'j1', name: 'shot010', user: 'ann', group: 'fx', project: 'fx', priority: 50, state: 'done', submittedAt: 1_699_999_000_000,
      startedAt: 1_699_999_100_000, finishedAt: 1_700_000_000_000, outputDir: '/mnt/renders/shot010',
      counts: { total: 100, done: 97, failed: 3, queued: 0, running: 0 },
    },
    ...(failures ? { failures } : {}),
  };
  return { id: 'j1.done.1700000000000', channel: 'webhook', to: ['https://hooks.example/a?token=t'], trigger: 'done', event, ...over };
}

test('notify delivery - backoff: 1, 2, 4, 8 s by default, doubling up to the cap', () => {
  assert.deepEqual(backoffSchedule(DEFAULT_RETRY), [1_000, 2_000, 4_000, 8_000]);
  assert.deepEqual(backoffSchedule({ attempts: 6, firstDelayMs: 250, maxDelayMs: 1_500 }), [250, 500, 1_000, 1_500, 1_500]);
  assert.deepEqual(backoffSchedule({ attempts: 1, firstDelayMs: 250, maxDelayMs: 1_500 }), []);
  assert.equal(backoffMs(DEFAULT_RETRY, 0), 1_000, 'never less than the first wait');
});

test('notify delivery - the signature is the hex HMAC-SHA256 of the exact body, as node:crypto computes it', () => {
  const body = '{"jobId":"j1","event":"done"}';
  const expected = `sha256=${createHmac('sha256', 'k3y').update(body).digest('hex')}`;
  assert.equal(signBody('k3y', body), expected);
  assert.equal(signBody('k3y', Buffer.from(body)), expected);
  assert.ok(verifySignature('k3y', body, expected));
  assert.ok(!verifySignature('other', body, expected), 'another secret');
  assert.ok(!verifySignature('k3y', body.replace('done', 'fail'), expected), 'a changed body');
  assert.ok(!verifySignature('k3y', body, undefined), 'no header');
  assert.ok(!verifySignature('k3y', body, 'sha256=00'), 'a short header');
});

test('notify delivery - a webhook request: the job event fields, id and sentAt in the signed body, repeated in headers', () => {
  const note = aNotification({ trigger: 'progress', percent: 50, sample: { frame: 48, output: '/mnt/renders/shot010/f_0048.png' } });
  const req = webhookRequest(note, 'studio', 's3cret', 1_700_000_000_500);
  const payload = codecs.webhookPayload.check(JSON.parse(req.body));
  assert.deepEqual(
    { id: payload.id, site: payload.site, jobId: payload.jobId, event: payload.event, at: payload.at, sentAt: payload.sentAt, percent: payload.percent, sample: payload.sample },
    { id: note.id, site: 'studio', jobId: 'j1', event: 'progress', at: note.event.at, sentAt: 1_700_000_000_500, percent: 50, sample: note.sample },
  );
  assert.deepEqual(payload.job, note.event.job);
  assert.equal(req.headers['x-renderbus-id'], note.id);
  assert.equal(req.headers['x-renderbus-timestamp'], '1700000000500');
  assert.equal(req.headers['x-renderbus-event'], 'progress');
  assert.equal(req.headers['content-type'], 'application/json');
  assert.equal(req.headers['x-renderbus-signature'], `sha256=${createHmac('sha256', 's3cret').update(req.body).digest('hex')}`);
  assert.equal(webhookRequest(note, 'studio', undefined, 1).headers['x-renderbus-signature'], undefined, 'no secret: unsigned');
  assert.equal(webhookOrigin('https://hooks.example:8443/services/T0/B1/secret?x=1'), 'https://hooks.example:8443');
});

test('notify delivery - POSTs: 2xx is sent; 5xx, 429 and network errors are retryable; 4xx and redirects are not', async (t) => {
  const statuses: number[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    const status = Number(req.url!.slice(1));
    statuses.push(status);
    res.writeHead(status, status === 301 ? { location: '/204' } : {}).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const req = webhookRequest(aNotification(), 'studio', 'k', 1);
  const allow = parseWebhookAllow(['127.0.0.1']); // the receiver is on loopback, refused by default
  await postWebhook(`${base}/204`, req, { allow });
  const failure = async (url: string) => {
    try {
      await postWebhook(url, req, { timeoutMs: 2_000, allow });
    } catch (err) {
      assert.ok(err instanceof DeliveryError, String(err));
      return [err.message, err.retryable];
    }
    return ['sent', false];
  };
  assert.deepEqual(await failure(`${base}/500`), ['HTTP 500', true]);
  assert.deepEqual(await failure(`${base}/429`), ['HTTP 429', true]);
  assert.deepEqual(await failure(`${base}/404`), ['HTTP 404: refused', false]);
  assert.deepEqual(await failure(`${base}/301`), ['HTTP 301: redirects are not followed (give the final URL)', false]);
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const closedPort = (closed.address() as { port: number }).port;
  closed.close();
  await once(closed, 'close');
  const [message, retryable] = await failure(`http://127.0.0.1:${closedPort}/`);
  assert.match(String(message), /ECONNREFUSED/);
  assert.equal(retryable, true);
  assert.deepEqual(statuses, [204, 500, 429, 404, 301]);
});

test('notify delivery - an email an artist understands: which job, how it ended, frames, failures, where the frames are', () => {
  const failures = Array.from({ length: 23 }, (_, i) => ({ frame: i + 1, error: 'povray exited 1: Parse Error' }));
  const failed = emailText(aNotification({ trigger: 'failed', channel: 'email', to: ['ann@studio.example'] }, failures), 'studio', false);
  assert.equal(failed.subject, '[renderbus] shot010 failed: 3 of 100 frames failed');
  assert.match(failed.text, /^Job shot010 \(j1\) failed: 3 of 100 frames failed, 97 rendered\.\n/);
  assert.match(failed.text, /\nTook: 15 min 0 s\n/);
  assert.match(failed.text, /\nFrames are in: \/mnt\/renders\/shot010\n/);
  assert.match(failed.text, /\n {2}frame 1: povray exited 1: Parse Error\n/);
  assert.match(failed.text, /\n {2}frame 20: /);
  assert.doesNotMatch(failed.text, /frame 21:/);
  assert.match(failed.text, /\.\.\. and 3 more \(renderbus job j1\)/);
  assert.match(failed.text, /renderbus retry j1/);

  const progress = emailText(aNotification({ trigger: 'progress', percent: 50, channel: 'email', to: ['a@b'], sample: { frame: 48, output: '/mnt/renders/shot010/f_0048.png' } }), 'studio', true);
  assert.equal(progress.subject, '[renderbus] shot010 is 50% rendered (100 of 100 frames)');
  assert.match(progress.text, /A recent frame, 48 \(thumbnail attached\):\n {2}\/mnt\/renders\/shot010\/f_0048\.png/);
  assert.match(progress.text, /Stop it early: renderbus cancel j1/);

  const done = emailText(aNotification({ channel: 'email', to: ['a@b'] }), 'studio', false);
  assert.equal(done.subject, '[renderbus] shot010 is done: 97 frames rendered');
});

test('notify delivery - SMTP answers: 4xx and a lost connection are retried, 5xx and bad credentials are not', () => {
  const verdict = (e: object) => {
    const d = smtpFailure(Object.assign(new Error('x'), e));
    return d.retryable;
  };
  assert.equal(verdict({ code: 'EENVELOPE', responseCode: 450 }), true);
  assert.equal(verdict({ code: 'EENVELOPE', responseCode: 550 }), false);
  assert.equal(verdict({ code: 'ECONNECTION' }), true);
  assert.equal(verdict({ code: 'ESOCKET' }), true);
  assert.equal(verdict({ code: 'EAUTH', responseCode: 535 }), false);
  assert.equal(verdict({ code: 'ECONFIG' }), false);
  assert.match(smtpFailure(Object.assign(new Error('Connection refused'), { code: 'ESOCKET' })).message, /^ESOCKET: Connection refused$/);
});
