import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { kernelVersion, parseCpuinfo, parseMeminfo, parseOsRelease, probeHost, probePackage } from '../../actors/render-server/index.ts';
import { cachedVersion } from '../../actors/render-server/version-cache.ts';

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-probe-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function script(dir: string, name: string, body: string): Promise<void> {
  await writeFile(join(dir, name), `#!/bin/sh\n${body}\n`);
  await chmod(join(dir, name), 0o755);
}

test('probe - reads kernel, distro, CPU and memory the way the registry matches them', () => {
  assert.equal(kernelVersion('6.1.0-18-amd64'), '6.1.0');
  assert.equal(kernelVersion('6.18.44-fc-v595'), '6.18.44');
  assert.equal(parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'), 'debian@12');
  assert.equal(parseOsRelease('ID=arch\n'), 'arch');
  assert.equal(parseOsRelease(''), null);
  assert.deepEqual(parseCpuinfo('processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6226R CPU @ 2.90GHz\ncpu MHz\t\t: 2893.202\n', 'x64'), {
    family: 'intel', type: 'Intel(R) Xeon(R) Gold 6226R CPU @ 2.90GHz', mhz: 2893.202,
  });
  assert.equal(parseCpuinfo('vendor_id\t: AuthenticAMD\n', 'x64').family, 'amd');
  assert.equal(parseCpuinfo('CPU implementer\t: 0x41\n', 'arm64').family, 'arm');
  assert.deepEqual(parseMeminfo('MemTotal:       24684096 kB\nMemFree: 1 kB\nSwapTotal:        2097148 kB\n'), { ramMb: 24105, swapMb: 2047 });
});

test('probe - the host describes itself and offered packages and licenses replace the probed ones', async () => {
  const inv = await probeHost({ packages: [{ name: 'blender', version: '3.4.1' }], licenses: ['arnold'] });
  assert.equal(inv.os.family, 'unix');
  assert.equal(inv.os.type, 'linux');
  assert.match(inv.os.version, /^\d+(\.\d+)*$/);
  assert.ok(inv.cpu.count >= 1 && inv.ramMb > 0);
  assert.deepEqual(inv.packages, [{ name: 'blender', version: '3.4.1' }]);
  assert.deepEqual(inv.licenses, ['arnold']);
});

test('probe - finds POV-Ray on this host with its version', async () => {
  const inv = await probeHost();
  const pov = inv.packages.find((p) => p.name === 'povray');
  assert.ok(pov, 'povray is installed here (apt-get install povray)');
  assert.match(pov.version, /^3\.7\.\d+(\.\d+)?$/);
});

test('probe - a package that hangs on --version counts as missing, quickly', async (t) => {
  const dir = await scratch(t);
  await mkdir(join(dir, 'bin'));
  await script(join(dir, 'bin'), 'slowray', 'exec sleep 30');
  await script(join(dir, 'bin'), 'fakeray', 'echo "FakeRay 2.1.7 (build 4)" >&2');
  const path = process.env.PATH;
  process.env.PATH = `${join(dir, 'bin')}:${path}`;
  t.after(() => (process.env.PATH = path));
  const t0 = performance.now();
  assert.equal(await probePackage('slowray', 'slowray', /SlowRay (\d+(?:\.\d+)+)/, 300), null);
  assert.ok(performance.now() - t0 < 2_000);
  assert.deepEqual(await probePackage('fakeray', 'fakeray', /FakeRay (\d+(?:\.\d+)+)/, 2_000), { name: 'fakeray', version: '2.1.7', path: join(dir, 'bin', 'fakeray') });
  assert.equal(await probePackage('nothing', 'no-such-binary-rb', /x/, 300), null);
});

test('probe - a program\'s version is asked once per program file: the same file answers from the cache, a changed one is asked again', async (t) => {
  const dir = await scratch(t);
  const prog = join(dir, 'prog');
  await writeFile(prog, 'v1');
  const file = join(dir, 'cache', 'versions.json');
  let asked = 0;
  const ask = (v: string) => async () => {
    asked++;
    return v;
  };
  assert.equal(await cachedVersion(prog, ask('1.0'), file), '1.0');
  assert.equal(await cachedVersion(prog, ask('9.9'), file), '1.0');
  assert.equal(asked, 1);
  await writeFile(prog, 'v2 longer'); // a new build: another size
  assert.equal(await cachedVersion(prog, ask('2.0'), file), '2.0');
  assert.equal(asked, 2);
  // a cache that does not parse is asked past, not fatal; no version found is not kept
  await writeFile(file, '{not json');
  assert.equal(await cachedVersion(prog, ask('2.0'), file), '2.0');
  assert.equal(await cachedVersion(prog, async () => undefined, join(dir, 'other.json')), undefined);
  assert.equal(existsSync(join(dir, 'other.json')), false);
});
