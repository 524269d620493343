import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmError, Role, subjects } from '../../protocol/index.ts';
import { authConfig, type AuthUser } from '../../sites/nats-config.ts';
import { linksConfig, PeerRole, type Peer, type SiteLinks } from '../../sites/links/index.ts';

const PW = 'a'.repeat(43);
const users: AuthUser[] = [{ site: 'studio', role: Role.Scheduler, name: 'scheduler', publicKey: `U${'A'.repeat(55)}` }];
const studio: SiteLinks = {
  site: 'studio',
  peers: [
    { name: 'v1', role: PeerRole.Leaf, password: PW },
    { name: 'v2', role: PeerRole.Leaf, password: PW.replace('a', 'b') },
  ],
  listen: { host: '0.0.0.0', port: 7422, advertise: 'farm.studio.example:7422' },
};
const v1: SiteLinks = { site: 'v1', peers: [{ name: 'studio', role: PeerRole.Hub, url: 'nats-leaf://farm.studio.example:7422', password: PW }] };

const refused = (l: SiteLinks, what: RegExp) =>
  assert.throws(
    () => linksConfig(l),
    (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_PEER' && what.test(e.message),
  );
const withPeer = (p: Partial<Peer>): SiteLinks => ({ ...studio, peers: [{ name: 'v3', role: PeerRole.Leaf, password: PW, ...p } as Peer] });

test('links-config - a site without links gets exactly the config it had', () => {
  // the text the generator wrote before links existed (checked against that version's code)
  const ann: AuthUser = { site: 'studio', role: Role.Artist, name: 'ann', publicKey: `U${'B'.repeat(55)}` };
  assert.equal(
    authConfig([ann]),
    'accounts {\n  FARM {\n    jetstream: enabled\n    users: [\n      # artist ann of site studio\n' +
      `      { nkey: "${ann.publicKey}", permissions: {\n` +
      '          publish: { allow: ["rb.studio.sched.submit.ann", "rb.studio.sched.ctl.ann", "rb.studio.sched.query", "rb.studio.sched.limits", "rb.studio.sched.shares", "rb.studio.sched.budgets", "rb.studio.sched.hosts", "rb.studio.reg.list", "rb.studio.link.status"] }\n' +
      '          subscribe: { allow: ["rb.studio.evt.>", "_INBOX.artist.ann.>"] }\n      } }\n    ]\n  }\n}\n',
  );
  assert.equal(authConfig(users), authConfig(users, undefined));
  assert.doesNotMatch(authConfig(users), /FED_|leafnodes|QUARANTINE|exports/);
});

test('links-config - the hub shares with each DMZ only that peer\'s subjects, the sender token checked by the DMZ', () => {
  const text = authConfig(users, linksConfig(studio));
  const farm = text.slice(text.indexOf('  FARM {'), text.indexOf('  FED_V1 {'));
  assert.match(farm, /\{ stream: "rb\.fed\.v1\.studio\.>", accounts: \[FED_V1\] \}/);
  assert.match(farm, /\{ service: "rb\.fedsvc\.studio\.v1\.>", accounts: \[FED_V1\] \}/);
  assert.match(farm, /\{ stream: \{ account: FED_V1, subject: "rb\.fed\.studio\.v1\.>" \} \}/);
  assert.match(farm, /\{ service: \{ account: FED_V1, subject: "rb\.fedsvc\.v1\.studio\.>" \} \}/);
  const dmz = text.slice(text.indexOf('  FED_V1 {'), text.indexOf('  FED_V2 {'));
  assert.match(dmz, /exports: \[\n {6}\{ stream: "rb\.fed\.studio\.v1\.>", accounts: \[FARM\] \}/);
  assert.doesNotMatch(dmz, /v2/, 'v1\'s DMZ names v2');
  assert.match(dmz, /user: "leaf-v1", password: "a{43}"/);
  for (const verb of ['STREAM.DELETE', 'STREAM.PURGE', 'STREAM.MSG.DELETE', 'CONSUMER.DELETE']) assert.ok(dmz.includes(`"$JS.studio.API.${verb}.>"`), verb);
  assert.ok(dmz.includes('"$JS.API.>"'));
  assert.match(text, /leafnodes \{\n {2}listen: "0\.0\.0\.0:7422"\n {2}advertise: "farm\.studio\.example:7422"\n {2}authorization \{ account: QUARANTINE \}/);
  assert.match(text, / {2}QUARANTINE \{\}/);
  assert.equal(linksConfig(studio).domain, 'studio');
});

test('links-config - a leaf binds its remote to the hub\'s DMZ, presenting its user and password', () => {
  const c = linksConfig(v1);
  assert.equal(c.leafnodes.length, 5);
  assert.match(c.leafnodes[2]!, new RegExp(`^ {4}\\{ url: "nats-leaf://leaf-v1:${PW}@farm\\.studio\\.example:7422", account: FED_STUDIO, deny_imports: \\[`));
  for (const verb of ['STREAM.DELETE', 'STREAM.PURGE', 'CONSUMER.DELETE']) assert.ok(c.leafnodes[2]!.includes(`"$JS.v1.API.${verb}.>"`), verb);
  assert.ok(!c.accounts.some((l) => l.includes('QUARANTINE')), 'a site without a listener needs no QUARANTINE');
  assert.ok(c.farm.includes('      { stream: "rb.fed.studio.v1.>", accounts: [FED_STUDIO] }'));
});

test('links-config - wrong peers are refused with RB_BAD_PEER naming the problem', () => {
  refused(withPeer({ name: 'V3' }), /peer name 'V3' is not a subject token/);
  refused(withPeer({ name: 'a.b' }), /not a subject token/);
  refused(withPeer({ name: 'studio' }), /'studio' is this site itself/);
  refused({ ...studio, peers: [...studio.peers, studio.peers[0]!] }, /'v1' is listed twice/);
  refused({ ...studio, peers: [{ name: 'a-b', role: PeerRole.Leaf, password: PW }, { name: 'a_b', role: PeerRole.Leaf, password: PW }] }, /'a-b' and 'a_b' would share the account FED_A_B/);
  refused(withPeer({ role: 'vendor' as PeerRole }), /role 'vendor' is neither hub nor leaf/);
  refused(withPeer({ password: 'short' }), /leaf password must be 24 to 128/);
  refused(withPeer({ password: `${PW}"x` }), /leaf password/);
  refused(withPeer({ url: 'nats-leaf://h:1' }), /is a leaf: it connects to us/);
  refused(withPeer({ role: PeerRole.Hub }), /is a hub: its url '' must be/);
  refused(withPeer({ role: PeerRole.Hub, url: 'nats-leaf://u:p@h:7422' }), /without a user/);
  refused(withPeer({ linkKeys: ['SUABC'] }), /link key 'SUABC' is not a user's public nkey/);
  refused({ ...studio, listen: undefined }, /has leaf peers but no leaf listener/);
  refused({ ...studio, listen: { host: '0.0.0.0', port: 7422, advertise: '' } }, /advertise '' must be the public host:port/);
  refused({ ...studio, site: 'Studio' }, /site 'Studio' is not a subject token/);
  refused(withPeer({ name: 'fed' }), /peer name 'fed' is reserved/);
  refused({ ...studio, site: 'fedsvc' }, /a site named 'fedsvc' cannot be linked/);
});

test('links-config - federation subjects name the receiver, then the sender, and check every token', () => {
  assert.equal(subjects.fed('v1', 'studio', 'job.j1.progress'), 'rb.fed.v1.studio.job.j1.progress');
  assert.equal(subjects.fedSvc('studio', 'v1', 'quote'), 'rb.fedsvc.studio.v1.quote');
  assert.equal(subjects.allFed('studio', 'v2'), 'rb.fed.studio.v2.>');
  for (const bad of [() => subjects.fed('v1', 'Studio', 'x'), () => subjects.fed('v1', 'studio', 'a..b'), () => subjects.fed('v1', 'studio', '>'), () => subjects.fedSvc('v1', 'studio', 'q.x')]) {
    assert.throws(bad, (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_SUBJECT_TOKEN');
  }
});
