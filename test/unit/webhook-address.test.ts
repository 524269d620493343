import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { networkInterfaces } from 'node:os';
import {
  DeliveryError, isAllowed, parseWebhookAllow, postWebhook, refusedAddress, webhookRequest, webhookTarget, type Notification, type Resolve,
} from '../../actors/notifier/index.ts';
import { PROTOCOL_MAJOR } from '../../protocol/index.ts';

const note: Notification = {
  id: 'j1.done.1', channel: 'webhook', to: ['http://x/'], trigger: 'done',
  event: { v: PROTOCOL_MAJOR, jobId: 'j1', event: 'done', at: 1, job: { jobId: 'j1', name: 'shot', user: 'ann', group: 'fx', project: 'fx', priority: 50, state: 'done', submittedAt: 1, outputDir: '/r', counts: { total: 1, queued: 0, running: 0, done: 1, failed: 0 } } },
};

/** A receiver on 0.0.0.0 (so every address of this machine reaches it) that keeps what it is sent. */
async function receiver(t: { after(fn: () => void): void }) {
  const got: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    got.push(req);
    req.resume();
    res.writeHead(204).end();
  });
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { got, port: (server.address() as { port: number }).port };
}

const refusal = async (p: Promise<unknown>): Promise<DeliveryError> => {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DeliveryError, String(err));
    return err;
  }
  return assert.fail('the webhook was sent');
};

test('webhook address - loopback, link-local, unspecified, multicast, broadcast and our own addresses are refused; others are not', () => {
  const own = new Map([['192.0.2.2', 'eth0'], ['fd00::2', 'eth0']]);
  const cases: [string, RegExp | null][] = [
    ['127.0.0.1', /loopback/], ['127.8.9.10', /loopback/], ['::1', /loopback/], ['::ffff:127.0.0.1', /loopback/],
    ['169.254.169.254', /link-local/], ['fe80::1', /link-local/], ['fe80::1%eth0', /link-local/],
    ['0.0.0.0', /unspecified/], ['::', /unspecified/], ['224.0.0.1', /multicast/], ['ff02::1', /multicast/], ['255.255.255.255', /broadcast/],
    ['192.0.2.2', /this machine \(eth0\)/], ['::ffff:192.0.2.2', /this machine/], ['FD00::2', /this machine/],
    ['10.1.2.3', null], ['192.168.1.20', null], ['93.184.216.34', null], ['fd00::9', null], ['2001:db8::1', null],
  ];
  for (const [address, why] of cases) {
    const got = refusedAddress(address, own);
    if (why === null) assert.equal(got, null, address);
    else assert.match(got ?? '', why, address);
  }
});

test('webhook address - allow entries: an address or a block, with or without a port; bad ones named', () => {
  const allow = parseWebhookAllow(['127.0.0.1:9000', '169.254.0.0/16', '[::1]:9000', 'fe80::/10']);
  assert.equal(isAllowed(allow, '127.0.0.1', 9000), true);
  assert.equal(isAllowed(allow, '127.0.0.1', 9001), false, 'another port');
  assert.equal(isAllowed(allow, '127.0.0.2', 9000), false, 'another address');
  assert.equal(isAllowed(allow, '::ffff:127.0.0.1', 9000), true);
  assert.equal(isAllowed(allow, '169.254.1.1', 80), true);
  assert.equal(isAllowed(allow, '::1', 9000), true);
  assert.equal(isAllowed(allow, 'fe80::5', 443), true);
  for (const [entry, message] of [['localhost', /not an address/], ['10.0.0.0/40', /\/40 is longer/], ['1.2.3.4:0', /port 0 is out of range/], ['999.1.1.1', /not an IP address/]] as const) {
    assert.throws(() => parseWebhookAllow([entry]), (err: Error) => message.test(err.message) && err.message.includes(`'${entry}'`), entry);
  }
});

test('webhook address - a POST to 127.0.0.1 is refused for good and nothing reaches the listener; allowed, it arrives signed', async (t) => {
  const r = await receiver(t);
  const req = webhookRequest(note, 'studio', 'k', 1);
  const err = await refusal(postWebhook(`http://127.0.0.1:${r.port}/hook?token=x`, req));
  assert.equal(err.retryable, false, 'a refusal is not retried');
  assert.equal(err.message, `refused: 127.0.0.1 is a loopback address; the site allows such webhooks with --webhook-allow 127.0.0.1:${r.port} (or RB_WEBHOOK_ALLOW)`);
  assert.doesNotMatch(err.message, /token=x/);
  // a name that resolves to loopback is refused the same way, whichever of its addresses it is
  const local = await refusal(postWebhook(`http://localhost:${r.port}/`, req));
  assert.match(local.message, /^refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address/);
  // and so is this machine's own address, where the monitor may listen
  const mine = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4');
  if (mine) assert.match((await refusal(postWebhook(`http://${mine.address}:${r.port}/`, req))).message, /is an address of this machine/);
  assert.equal(r.got.length, 0, 'nothing reached the listener');

  await postWebhook(`http://127.0.0.1:${r.port}/hook`, req, { allow: parseWebhookAllow([`127.0.0.1:${r.port}`]) });
  assert.equal(r.got.length, 1);
  assert.equal(r.got[0]!.headers['x-renderbus-signature'], req.headers['x-renderbus-signature']);
  // allowed on another port only: still refused
  await refusal(postWebhook(`http://127.0.0.1:${r.port}/hook`, req, { allow: parseWebhookAllow([`127.0.0.1:${r.port + 1}`]) }));
  assert.equal(r.got.length, 1);
});

test('webhook address - the name is resolved once and the connection goes to the address checked', async (t) => {
  const r = await receiver(t);
  const req = webhookRequest(note, 'studio', undefined, 1);
  let asked = 0;
  // a DNS whose answer changes: the receiver's address (allowed) first, somewhere else afterwards
  const rebinding: Resolve = async () => (asked++ === 0 ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.255.255.1', family: 4 }]);
  // `.test` names do not resolve on any system: the POST can only arrive through the checked address
  await postWebhook(`http://hooks.rebind.test:${r.port}/x`, req, { resolve: rebinding, allow: parseWebhookAllow(['127.0.0.1']) });
  assert.equal(asked, 1, 'one resolution');
  assert.equal(r.got.length, 1);
  assert.equal(r.got[0]!.headers.host, `hooks.rebind.test:${r.port}`, 'Host stays the URL\'s');

  // a name with a harmless address and a forbidden one is refused
  const mixed: Resolve = async () => [{ address: '10.0.0.7', family: 4 }, { address: '127.0.0.1', family: 4 }];
  assert.match((await refusal(webhookTarget('https://hooks.studio.example/x', { resolve: mixed }))).message, /^refused: hooks\.studio\.example \(127\.0\.0\.1\) is a loopback address; .* 127\.0\.0\.1:443 /);
  assert.deepEqual(await webhookTarget('https://hooks.studio.example/x', { resolve: async () => [{ address: '10.0.0.7', family: 4 }] }), { address: '10.0.0.7', family: 4, port: 443 });
  const nxdomain: Resolve = async () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
  const dns = await refusal(webhookTarget('https://nowhere.example/', { resolve: nxdomain }));
  assert.equal(dns.retryable, true, 'a name that does not resolve may resolve later');
  assert.match((await refusal(webhookTarget('http://[::1]:9000/', {}))).message, /--webhook-allow \[::1\]:9000/);
});
