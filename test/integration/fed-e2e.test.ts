import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { freePort, waitUntil } from '../helpers/farm.ts';
import { killUp, rbIn as rb, startUp as startUpOf, stopUp, type UpProcess as Up } from '../helpers/site-process.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';

/*
 * Issue 14 end to end, every part real: three sites run as `renderbus up --site` (a studio and two
 * vendors, each its own nats-server, scheduler, registry, render server with POV-Ray, link service
 * and intake), linked by `site invite` and `site join`, the vendors' leafs going through a TCP proxy
 * that can cut the links (the studio advertises the proxy, so a leaf comes back through it). A
 * POV-Ray job with an #include and an image_map texture is submitted at the studio with `site: v1`
 * and its frames come back into the studio's output folder, pixel-identical to the studio
 * rendering it itself; another goes to v2 while first the studio and then v2 are killed with
 * kill -9 (each `up` with its nats-server) and started again.
 */

const SCENE = `#include "parts.inc"
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { image_map { png "checker.png" } rotate x * 90 scale 2 } }
sphere { <-1.5 + clock * 0.3, 0.5, 0>, 0.5 texture { Ball } }
`;

const startUp = (cwd: string, data: string, args: string[]) => startUpOf(cwd, data, args, { slots: 1 });
const pixels = async (file: string) => (await sharp(file).raw().toBuffer()).toString('base64');


interface Peer {
  name: string;
  state: string;
  link?: { outgoing: { bundles: number }; bytesOut: number; bytesIn: number };
}
const sitesOf = (dir: string, data: string) => JSON.parse(rb(dir, '--data', data, 'sites', '--json').stdout) as { answered: boolean; peers: Peer[] };
const jobOf = (dir: string, data: string, id: string) => JSON.parse(rb(dir, '--data', data, 'job', id, '--json').stdout) as { state: string; error?: string };

test('fed e2e - a studio outsources POV-Ray jobs to two vendors over real leaf links, through cuts and kill -9 of either site; the frames come back as if rendered at home', { timeout: 600_000 }, async (t) => {
  // not under /tmp: a job's original paths may not lie under system directories (docs/federation.md)
  const dir = await mkdtemp('/var/tmp/rb-fed-e2e-');
  const ups: Up[] = [];
  const leafPort = await freePort();
  const proxy = await startTcpProxy(leafPort);
  t.after(async () => {
    for (const u of ups.reverse()) await stopUp(u);
    await proxy.close();
    await rm(dir, { recursive: true, force: true });
  });
  // the client's webhook receiver: told of an outsourced job as of a local one
  const hooks: string[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      hooks.push(body);
      res.end('ok');
    });
  }).listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  const hookPort = (receiver.address() as { port: number }).port;
  t.after(() => void receiver.close());
  const studioData = join(dir, 'studio');
  const v1Data = join(dir, 'v1');
  const v2Data = join(dir, 'v2');
  let studio = await startUp(dir, studioData, ['--site', 'studio', '--leaf-listen', `127.0.0.1:${leafPort}`, '--advertise', `127.0.0.1:${proxy.port}`, '--webhook-allow', `127.0.0.1:${hookPort}`]);
  ups.push(studio);
  const v1 = await startUp(dir, v1Data, ['--site', 'v1']);
  ups.push(v1);
  let v2 = await startUp(dir, v2Data, ['--site', 'v2']);
  ups.push(v2);
  const linkUp = (data: string, peer: string) => sitesOf(dir, data).peers.find((p) => p.name === peer)?.state === 'up';
  for (const [vendor, data] of [['v1', v1Data], ['v2', v2Data]] as const) {
    const token = rb(dir, '--data', studioData, 'site', 'invite', vendor).stdout.trim();
    const joined = rb(dir, '--data', data, 'site', 'join', token);
    assert.equal(joined.code, 0, joined.stderr);
  }
  for (const [vendor, data] of [['v1', v1Data], ['v2', v2Data]] as const) {
    await waitUntil(`the studio to see ${vendor} up`, () => linkUp(studioData, vendor), 60_000, 500);
    await waitUntil(`${vendor} to see the studio up`, () => linkUp(data, 'studio'), 60_000, 500);
  }

  // the project, where an artist keeps it
  const proj = join(dir, 'proj');
  await mkdir(proj, { recursive: true });
  await writeFile(join(proj, 'shot.pov'), SCENE);
  await writeFile(join(proj, 'parts.inc'), '#declare Ball = texture { pigment { color rgb <1, 0.3, 0.2> } finish { phong 0.5 } };\n');
  // noise compresses badly: a texture of ~190 KB, so a re-send of it would show in the byte count
  await sharp(randomBytes(256 * 256 * 3), { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(join(proj, 'checker.png'));
  const textureBytes = (await stat(join(proj, 'checker.png'))).size;
  const jobFile = async (name: string, over: Record<string, unknown>) => {
    const f = join(dir, `${name}.json`);
    await writeFile(f, JSON.stringify({
      name, scene: join(proj, 'shot.pov'), frames: '1-4', resolution: '96x72', supportFiles: [join(proj, 'parts.inc'), join(proj, 'checker.png')],
      output: { dir: join(proj, `out-${name}`), pattern: 'shot_####.png' }, ...over,
    }));
    return f;
  };
  const submit = async (name: string, over: Record<string, unknown>, ...flags: string[]) => {
    const r = rb(dir, '--data', studioData, 'submit', await jobFile(name, over), ...flags);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const waitDone = (id: string, timeoutMs = 180_000) => waitUntil(`job ${id} done`, () => {
    const j = jobOf(dir, studioData, id);
    if (j.state === 'failed' || j.state === 'cancelled') throw new Error(`job ${id} ended ${j.state}: ${j.error}\n${studio.out().slice(-3000)}\n${v1.out().slice(-3000)}`);
    return j.state === 'done';
  }, timeoutMs, 500);

  // at home first, for the pixels to compare with
  const home = await submit('home', {});
  await waitDone(home);

  // outsourced; the link cut while the bundle is on its way and while v1 renders, then restored
  const bytes0 = proxy.bytes;
  const away = await submit('away', { site: 'v1', frames: '1-6' }, '--notify', `http://127.0.0.1:${hookPort}/hook`);
  await waitUntil('the job to be outsourced', () => jobOf(dir, studioData, away).state === 'outsourced', 30_000, 200);
  const cut = async (why: string) => {
    proxy.cut();
    await waitUntil(`the studio to see the link down (${why})`, () => sitesOf(dir, studioData).peers.find((p) => p.name === 'v1')?.state === 'down', 30_000, 500);
    proxy.restore();
  };
  await cut('the bundle on its way');
  // and again once v1 renders it: a frame is back
  await waitUntil('a first frame back', async () => (await readdir(join(proj, 'out-away')).catch(() => [])).some((f) => f.endsWith('.png')), 120_000, 200);
  await cut('mid-render');
  await waitDone(away);
  const shown = rb(dir, '--data', studioData, 'job', away);
  assert.match(shown.stdout, /v1/, `renderbus job names the site: ${shown.stdout}`);
  await waitUntil('the webhook to be told', () => hooks.some((h) => h.includes(away)), 30_000, 200);
  const firstBytes = proxy.bytes - bytes0;
  assert.deepEqual((await readdir(join(proj, 'out-away'))).filter((f) => f.endsWith('.png')).sort(), ['shot_0001.png', 'shot_0002.png', 'shot_0003.png', 'shot_0004.png', 'shot_0005.png', 'shot_0006.png'], 'every frame back once, none half written');
  for (const f of ['shot_0001.png', 'shot_0002.png', 'shot_0003.png', 'shot_0004.png']) {
    assert.equal(await pixels(join(proj, 'out-away', f)), await pixels(join(proj, 'out-home', f)), `${f} is pixel-identical to the one rendered at home`);
  }
  // the task logs and the sample thumbnails came back beside the frames
  const logs = (await readdir(join(proj, 'out-away', '.rb-logs', 'remote-v1'))).filter((n) => n.endsWith('.log'));
  assert.ok(logs.length > 0, 'the task logs are back');
  // and they show where it ran: a peer's job renders in the I/O wrapper, its files at their original paths
  assert.match(await readFile(join(proj, 'out-away', '.rb-logs', 'remote-v1', logs[0]!), 'utf8'), /^\$ \S*bwrap .* -- .*povray .*\+I"?\/var\/tmp\/rb-fed-e2e-\S+\/proj\/shot\.pov/m, 'rendered in the sandbox, the scene at its studio path');
  assert.ok((await readdir(join(proj, 'out-away', '.rb-samples'))).length > 0, 'sample thumbnails are back');
  // the bill, signed by v1 and checked with the key its link presented
  const bills = await readdir(join(studioData, 'fed', 'bills', 'v1'));
  const bill = JSON.parse(await readFile(join(studioData, 'fed', 'bills', 'v1', bills.find((b) => b.includes(away))!), 'utf8')) as { signed: boolean; bill: { totals: { frames: number } } };
  assert.equal(bill.signed, true, 'the bill is signed with the key v1 presented on its link');
  assert.equal(bill.bill.totals.frames, 6);

  // the same scene again: only the manifest and protocol cross, no content
  const sentByStudio = () => sitesOf(dir, studioData).peers.find((p) => p.name === 'v1')?.link?.bytesOut ?? assert.fail('no link figures');
  const bytes1 = proxy.bytes;
  const out1 = sentByStudio();
  const again = await submit('again', { site: 'v1' });
  await waitDone(again);
  const againBytes = proxy.bytes - bytes1;
  const againOut = sentByStudio() - out1;
  t.diagnostic(`first outsourced job: ${firstBytes} bytes over the leaf both ways (texture ${textureBytes}); the same scene again: ${againBytes} both ways, ${againOut} sent by the studio's link`);
  assert.ok(firstBytes > textureBytes, 'the texture crossed the first time');
  // what the studio's link sent for the same scene again: the manifest and the protocol, no file
  assert.ok(againOut < 16 * 1024, `the same scene again re-sent no content: the studio's link sent ${againOut} bytes, the texture alone is ${textureBytes}`);

  // kill -9 of a whole site mid-job, the studio's and then v2's (each `up` with its scheduler and its
  // nats-server), each started again on its data directory: the job completes, every frame once
  const hard = await submit('hard', { site: 'v2', frames: '1-40' });
  const atV2 = () => (JSON.parse(rb(dir, '--data', v2Data, 'jobs', '--json').stdout) as { state: string; origin?: { job: string } }[]).find((j) => j.origin?.job === hard);
  await waitUntil('v2 to render it', () => atV2()?.state === 'rendering', 60_000, 300);
  await killUp(studio);
  studio = await studio.again();
  ups.push(studio);
  const framesBack = async () => (await readdir(join(proj, 'out-hard')).catch(() => [])).filter((f) => f.endsWith('.png'));
  await waitUntil('a frame of it back at the restarted studio', async () => (await framesBack()).length > 0, 120_000, 200);
  const backBeforeKill = (await framesBack()).length;
  await killUp(v2);
  v2 = await v2.again();
  ups.push(v2);
  await waitDone(hard);
  t.diagnostic(`kill -9: ${backBeforeKill} of 40 frames were back when v2 was killed`);
  assert.ok(backBeforeKill < 40, 'v2 was killed mid-job');
  assert.deepEqual((await framesBack()).sort(), Array.from({ length: 40 }, (_, i) => `shot_${String(i + 1).padStart(4, '0')}.png`), 'every frame back once');
  for (const f of ['shot_0001.png', 'shot_0004.png']) {
    assert.equal(await pixels(join(proj, 'out-hard', f)), await pixels(join(proj, 'out-home', f)), `${f} from v2 is pixel-identical to the one rendered at home`);
  }
  await waitUntil('the links up again', () => linkUp(studioData, 'v1') && linkUp(studioData, 'v2'), 60_000, 500);

  // a cancel at the studio cancels at v1
  const long = await submit('long', { site: 'v1', frames: '1-200' });
  const atV1 = () => (JSON.parse(rb(dir, '--data', v1Data, 'jobs', '--json').stdout) as { jobId: string; state: string; origin?: { job: string } }[]).find((j) => j.origin?.job === long);
  await waitUntil('v1 to render the long job', () => atV1()?.state === 'rendering', 60_000, 300);
  assert.equal(rb(dir, '--data', studioData, 'cancel', long).code, 0);
  await waitUntil('v1 to cancel it', () => atV1()?.state === 'cancelled', 60_000, 300);
  assert.equal(jobOf(dir, studioData, long).state, 'cancelled');

  // the operator's view of the intake, and the release command (link.release, on the CLI's credential)
  const shownV1 = JSON.parse(rb(dir, '--data', studioData, 'site', 'v1', '--json').stdout) as { intake: { waiting: number; held?: string } };
  assert.equal(shownV1.intake.held, undefined, 'v1 is not held: its key is known, its link not quarantined');
  const released = rb(dir, '--data', studioData, 'site', 'release', 'v1');
  assert.equal(released.code, 0, released.stderr);
  assert.match(released.stdout, /v1 is not quarantined \(its link is (up|down)\): nothing to release/);
});
