import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inputBinds, sandboxArgv, sandboxLimits } from '../../actors/render-slot/sandbox.ts';
import { FarmError, prepareJob } from '../../protocol/index.ts';

const plan = { bwrap: '/usr/bin/bwrap', inputs: [{ from: '/proj/shot', to: '/proj/shot' }], workDir: '/out/.rb-partial/j.0-a1', extra: ['/etc/povray'] };

test('sandbox argv - the renderer runs last, in its folder, with its environment and nothing of the host', () => {
  const argv = sandboxArgv(plan, ['povray', '+Ishot.pov'], '/proj/shot', { PATH: '/usr/bin', HOME: '/root', TMPDIR: '/scratch', LANG: 'C' });
  assert.deepEqual(argv.slice(-3), ['--', 'povray', '+Ishot.pov']);
  const at = (flag: string, ...values: string[]) => argv.some((_, i) => argv[i] === flag && values.every((v, k) => argv[i + 1 + k] === v));
  assert.ok(at('--unshare-all') && at('--cap-drop', 'ALL') && at('--die-with-parent') && at('--clearenv'), 'no namespace shared, no capability, dies with its parent');
  assert.ok(at('--ro-bind', '/proj/shot', '/proj/shot') && at('--bind', plan.workDir, plan.workDir), 'inputs read-only, the work dir writable');
  assert.ok(at('--ro-bind-try', '/etc/povray', '/etc/povray'), "the renderer's own configuration");
  assert.ok(at('--chdir', '/proj/shot') && at('--setenv', 'LANG', 'C') && at('--setenv', 'HOME', '/home') && !argv.includes('/root') && !argv.includes('/scratch'), "the host's HOME and TMPDIR do not pass");
  assert.equal(argv.filter((a) => a === '--bind').length, 1, 'one writable place');
  assert.ok(at('--perms', '0755', '--dir', '/out') && at('--perms', '0755', '--dir', '/out/.rb-partial'), 'folders above a bind, passable by an unprivileged user');
  assert.ok(!at('--dir', '/proj/shot'), 'no folder is made over an input');
});

test('sandbox argv - as root, no user namespace and setpriv drops to the unprivileged user inside', () => {
  const argv = sandboxArgv({ ...plan, runAs: { uid: 65534, gid: 65534, setpriv: '/usr/bin/setpriv' } }, ['true'], '/', {});
  assert.ok(!argv.includes('--unshare-all') && argv.includes('--unshare-net') && argv.includes('--unshare-pid'));
  const i = argv.indexOf('/usr/bin/setpriv');
  assert.ok(i > argv.indexOf('--chdir'), 'setpriv runs inside, after bwrap made the mounts');
  assert.deepEqual(argv.slice(i + 1, i + 7), ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--']);
});

test('sandbox argv - an input is never shown over the system', () => {
  for (const to of ['/usr/share/x', '/etc', '/proc/1', '/', 'relative/x', '/a/../etc']) {
    assert.throws(() => sandboxArgv({ ...plan, inputs: [{ from: '/x', to }] }, ['true'], '/', {}), (e: FarmError) => e.code === 'RB_BAD_JOB', to);
  }
});

test("sandbox binds - a local job's folders once each; a peer's tree at the original paths", () => {
  assert.deepEqual(inputBinds({ files: ['/p/a/shot.pov', '/p/a/tex/wood.png', '/p/b/x.inc', '/p/a/y.inc'] }), [
    { from: '/p/a', to: '/p/a' },
    { from: '/p/b', to: '/p/b' },
  ]);
  assert.deepEqual(inputBinds({ root: '/data/fed/jobs/studio/j1/root', tops: ['studio', 'mnt'], files: [] }), [
    { from: '/data/fed/jobs/studio/j1/root/studio', to: '/studio' },
    { from: '/data/fed/jobs/studio/j1/root/mnt', to: '/mnt' },
  ]);
});

test('sandbox jobs - need a host that can sandbox', () => {
  const job = prepareJob({ name: 'x', scene: '/p/shot.pov', frames: '1', output: { dir: '/out' }, sandbox: true });
  assert.ok(job.requirements.packages?.includes('sandbox'));
  assert.ok(!prepareJob({ name: 'x', scene: '/p/shot.pov', frames: '1', output: { dir: '/out' } }).requirements.packages?.includes('sandbox'));
});

test('sandbox limits - address space at 4× the memory given, CPU at the time limit × cores with a fifth to spare; prlimit runs the renderer', () => {
  assert.equal(sandboxLimits({ cpus: 2 }), undefined);
  assert.deepEqual(sandboxLimits({ memoryLimitMb: 512, timeLimitMs: 10_000, cpus: 2 }), { addressSpaceBytes: 2048 * 1024 * 1024, cpuSeconds: 24 });
  const argv = sandboxArgv({ ...plan, limits: { addressSpaceBytes: 1 << 30, cpuSeconds: 24 } }, ['povray', 'x'], '/', {});
  assert.deepEqual(argv.slice(-6), ['/usr/bin/prlimit', `--as=${1 << 30}`, '--cpu=24', '--', 'povray', 'x']);
});
