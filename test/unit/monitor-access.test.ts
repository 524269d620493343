import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkAccess, hostAllowed, isLoopbackAddress, readKey, sameSecret, type AccessRequest } from '../../actors/monitor/index.ts';

const TOKEN = 'Zm9vYmFyYmF6cXV1eA';
const PORT = 8080;
const policy = { token: TOKEN, hosts: ['farm.studio.example', 'proxy.studio.example:8443'] };
const ask = (over: Partial<AccessRequest>): ReturnType<typeof checkAccess> =>
  checkAccess({ method: 'GET', host: `127.0.0.1:${PORT}`, remoteAddress: '127.0.0.1', headerToken: undefined, readCookie: undefined, isPublic: false, ...over }, policy, PORT);
const status = (v: ReturnType<typeof checkAccess>) => (v.ok ? 200 : v.status);

test('monitor access - a Host that is not the monitor\'s is refused before anything else, token or not', () => {
  for (const host of ['evil.example:8080', 'evil.example', `127.0.0.1:${PORT + 1}`, 'localhost', '', undefined, 'farm.studio.example.evil.example', 'proxy.studio.example:8444', 'a b']) {
    assert.equal(status(ask({ host, headerToken: TOKEN, method: 'POST' })), 421, String(host));
  }
  for (const host of [`127.0.0.1:${PORT}`, `localhost:${PORT}`, `LOCALHOST:${PORT}`, `[::1]:${PORT}`, 'farm.studio.example', `farm.studio.example:${PORT}`, 'proxy.studio.example:8443']) {
    assert.equal(status(ask({ host })), 200, host);
  }
  const refused = ask({ host: 'rebind.evil.example:8080' });
  assert.ok(!refused.ok && refused.code === 'RB_HOST_REFUSED' && /--monitor-host/.test(refused.message));
  assert.equal(hostAllowed(`[::1]:${PORT}`, PORT, []), true);
  assert.equal(hostAllowed('[::1]', PORT, []), false, 'port 80 is not ours');
});

test('monitor access - actions need the token in a header, from anywhere; a cookie is not enough', () => {
  for (const method of ['POST', 'PUT', 'DELETE']) {
    assert.equal(status(ask({ method })), 401, `${method} without a token`);
    assert.equal(status(ask({ method, readCookie: readKey(TOKEN) })), 401, `${method} with the read cookie only`);
    assert.equal(status(ask({ method, headerToken: 'wrong' })), 401);
    assert.equal(status(ask({ method, headerToken: TOKEN })), 200);
    assert.equal(status(ask({ method, headerToken: TOKEN, remoteAddress: '192.0.2.7' })), 200);
  }
  const noToken = checkAccess({ method: 'POST', host: `127.0.0.1:${PORT}`, remoteAddress: '127.0.0.1', headerToken: 'anything', readCookie: undefined, isPublic: false }, {}, PORT);
  assert.equal(status(noToken), 401, 'a monitor without a token takes no actions');
});

test('monitor access - reads: free on loopback; from another machine with the token, the read cookie, or for the page\'s files only', () => {
  assert.deepEqual(ask({}), { ok: true, token: false, loopback: true });
  assert.deepEqual(ask({ remoteAddress: '::ffff:127.0.0.1' }), { ok: true, token: false, loopback: true });
  for (const remote of ['192.0.2.7', '10.0.0.3', '::ffff:192.0.2.7', 'fe80::1', undefined]) {
    assert.equal(status(ask({ remoteAddress: remote })), 401, String(remote));
    assert.equal(status(ask({ remoteAddress: remote, readCookie: 'forged' })), 401);
    assert.equal(status(ask({ remoteAddress: remote, readCookie: TOKEN })), 401, 'the cookie holds a key derived from the token, not the token');
    assert.deepEqual(ask({ remoteAddress: remote, readCookie: readKey(TOKEN) }), { ok: true, token: false, loopback: false });
    assert.deepEqual(ask({ remoteAddress: remote, headerToken: TOKEN }), { ok: true, token: true, loopback: false });
    assert.equal(status(ask({ remoteAddress: remote, isPublic: true })), 200, 'the page itself');
  }
  assert.equal(status(ask({ headerToken: 'wrong' })), 401, 'a wrong token is refused even where none is needed');
});

test('monitor access - loopback addresses and constant-time comparison', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['192.0.2.2', '::ffff:192.0.2.2', '0.0.0.0', '::', 'fe80::1', '1270::1', undefined]) assert.equal(isLoopbackAddress(a), false, String(a));
  assert.equal(sameSecret(TOKEN, TOKEN), true);
  assert.equal(sameSecret(TOKEN.slice(1), TOKEN), false);
  assert.equal(sameSecret('', TOKEN), false);
});
