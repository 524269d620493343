import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmError, parseServerList, replicasFor } from '../../protocol/index.ts';
import { clusterBlock, serverConfig } from '../../sites/server-config.ts';

const block = { name: 'renderbus-studio', listen: '0.0.0.0:6222', routes: ['a:6222', 'b:6222', 'c:6222'], user: 'route', password: 'f00d' };

test('cluster config - a member has its cluster block with authenticated routes to every member', () => {
  const text = serverConfig({ listen: '0.0.0.0:4222', serverName: 'n2', maxPayload: 1048576, storeDir: '/srv/nats/jetstream', maxFileStore: 1024, cluster: block, authInclude: '../auth.conf' });
  assert.match(text, /^server_name: "n2"$/m);
  assert.match(text, /^jetstream \{ store_dir: "\/srv\/nats\/jetstream", max_file_store: 1024 \}$/m);
  assert.match(text, /^cluster \{\n {2}name: "renderbus-studio"\n {2}listen: "0\.0\.0\.0:6222"\n/m);
  assert.match(text, /authorization \{ user: "route", password: "f00d" \}/);
  assert.match(text, /routes: \["nats-route:\/\/route:f00d@a:6222", "nats-route:\/\/route:f00d@b:6222", "nats-route:\/\/route:f00d@c:6222"\]/);
  assert.match(text, /^include "\.\.\/auth\.conf"$/m);
});

test('cluster config - one server has no cluster block', () => {
  const text = serverConfig({ listen: '127.0.0.1:-1', serverName: 'renderbus-studio', maxPayload: 1048576, storeDir: '/d', maxFileStore: 1 });
  assert.doesNotMatch(text, /cluster/);
  assert.match(text, /^include "auth\.conf"$/m);
});

test('cluster config - a name or route credential that is not a token is refused', () => {
  assert.throws(() => clusterBlock({ ...block, name: 'a b' }), /cluster name 'a b'/);
  assert.throws(() => clusterBlock({ ...block, password: 'p@ss' }), /route password/);
});

test('cluster config - a server list is parsed; a bad URL names itself', () => {
  assert.deepEqual(parseServerList('nats://a:4222'), ['nats://a:4222']);
  assert.deepEqual(parseServerList(' nats://a:4222 , b:4223,tls://c:4224 '), ['nats://a:4222', 'b:4223', 'tls://c:4224']);
  assert.deepEqual(parseServerList('a:1,a:1'), ['a:1']);
  const bad = (text: string, re: RegExp) => assert.throws(() => parseServerList(text), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_ARGUMENT' && re.test(e.message));
  bad('nats://a:1,,nats://b:2', /--nats: server 2 of 3 is empty/);
  bad('', /server 1 of 1 is empty/);
  bad('nats://a:1,http://b:2', /'http:\/\/b:2' is a http URL/);
  bad('nats://a:1,nats://b:99999', /'nats:\/\/b:99999' is not a URL/);
  bad('nats://a b:1', /'nats:\/\/a b:1' is not a URL/);
  bad('nats://a:1/jobs', /'nats:\/\/a:1\/jobs' has a path/);
  assert.throws(() => parseServerList('x:1,', 'RENDERBUS_NATS'), /RENDERBUS_NATS: server 2 of 2 is empty/);
});

test('cluster config - replicas: one per server up to three', () => {
  assert.equal(replicasFor(1), 1);
  assert.equal(replicasFor(3), 3);
  assert.equal(replicasFor(5), 3);
  assert.throws(() => replicasFor(0), /not a size/);
});
