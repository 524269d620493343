import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FarmError,
  hostMatches,
  missingOn,
  parsePattern,
  toProfile,
  versionMatches,
  type HostInventory,
  type Requirements,
} from '../../protocol/index.ts';

function anInventory(o: Partial<HostInventory> = {}): HostInventory {
  return {
    machine: { family: 'x86_64', type: 'pc' },
    os: { family: 'linux', type: 'linux', version: '6.1.0', distro: 'debian' },
    cpu: { count: 8, family: 'intel', type: 'Xeon E5-2680', speedMhz: 2400 },
    ramMb: 16_384,
    swapMb: 2_048,
    packages: [{ name: 'povray', version: '3.7.0.10' }, { name: 'blender', version: '4.2.1', family: 'blender' }],
    licenses: ['arnold', 'RenderMan'],
    ...o,
  };
}

const matches = (req: Requirements, inv: HostInventory = anInventory()) => hostMatches(toProfile(req), inv);

function badSpec(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FarmError, `expected a FarmError, got ${String(err)}`);
    assert.equal(err.code, 'RB_BAD_SPEC');
    assert.ok(err.message.includes(field), `message '${err.message}' should name ${field}`);
    return true;
  });
}

test('profile - absent requirements match any host', () => {
  assert.equal(matches({}), true);
  assert.equal(hostMatches(toProfile(undefined), anInventory()), true);
  assert.deepEqual(missingOn(toProfile({}), anInventory()), []);
});

test('profile - an exact os version matches only that version', () => {
  const inv = anInventory({ os: { family: 'irix', type: 'irix', version: '6.5' } });
  assert.equal(matches({ os: 'irix@6.5' }, inv), true);
  assert.equal(matches({ os: 'irix@6.4' }, inv), false);
  assert.equal(matches({ os: 'irix@6' }, inv), false, '6 is not 6.5: versions match part for part');
  assert.equal(matches({ os: 'irix@6.5' }, anInventory({ os: { family: 'irix', type: 'irix', version: '6.5.22' } })), false);
  assert.equal(matches({ os: 'irix@6.50' }, inv), false);
});

test('profile - a trailing * version part matches whatever follows', () => {
  const inv = (version: string) => anInventory({ os: { family: 'irix', type: 'irix', version } });
  assert.equal(matches({ os: 'irix@6.*' }, inv('6.5')), true);
  assert.equal(matches({ os: 'irix@6.*' }, inv('6.5.22')), true);
  assert.equal(matches({ os: 'irix@6.*' }, inv('5.3')), false);
  assert.equal(matches({ os: 'irix@6.*' }, inv('60.1')), false, 'a part is compared whole, not as a prefix');
  assert.equal(matches({ os: 'irix@*' }, inv('5.3')), true);
  assert.equal(matches({ os: 'irix' }, inv('5.3')), true, 'no version: any version');
});

test('profile - a * in the middle of a version stands for exactly one part', () => {
  assert.equal(versionMatches(['6', '*', '3'], '6.2.3'), true);
  assert.equal(versionMatches(['6', '*', '3'], '6.2.4'), false);
  assert.equal(versionMatches(['6', '*', '3'], '6.2.3.1'), false);
  assert.equal(versionMatches(['*', '5'], '6.5'), true);
  assert.equal(versionMatches(['*', '5'], '6'), false);
  assert.equal(versionMatches(null, 'anything'), true);
});

test('profile - family/type patterns with * and name globs', () => {
  const mips = anInventory({ machine: { family: 'mips', type: 'r10000' } });
  assert.equal(matches({ machine: 'mips/*' }, mips), true);
  assert.equal(matches({ machine: 'mips/*' }), false);
  assert.equal(matches({ machine: '*/pc' }), true);
  assert.equal(matches({ machine: '*' }, mips), true);
  assert.equal(matches({ cpu: 'intel/*xeon*' }), true, 'globs are case-insensitive');
  assert.equal(matches({ cpu: 'intel/*epyc*' }), false);
  assert.equal(matches({ cpu: 'amd/*' }), false);
  assert.equal(matches({ cpu: 'Xeon*' }), true, 'a bare name is the type');
  assert.equal(matches({ os: 'LINUX/linux@6.*' }), true, 'names compare case-insensitively');
  assert.equal(matches({ os: 'bsd/*@*' }), false);
});

test('profile - numeric requirements are minimums', () => {
  assert.equal(matches({ cpuCount: 8, cpuMhz: 2400, ramMb: 16_384, swapMb: 2_048 }), true, 'equal is enough');
  assert.equal(matches({ cpuCount: 9 }), false);
  assert.equal(matches({ cpuMhz: 2401 }), false);
  assert.equal(matches({ ramMb: 16_385 }), false);
  assert.equal(matches({ swapMb: 4_096 }), false);
  assert.deepEqual(missingOn(toProfile({ cpuCount: 16, ramMb: 32_768 }), anInventory()), [
    'needs 16 CPUs, has 8',
    'needs 32768 MB RAM, has 16384',
  ]);
});

test('profile - every package must be present in a matching version', () => {
  assert.equal(matches({ packages: ['povray@3.7.*'] }), true);
  assert.equal(matches({ packages: ['povray@3.7.*', 'blender@4.*'] }), true);
  assert.equal(matches({ packages: ['blender/blender@4.2.1'] }), true, 'a package family is matched when named');
  assert.equal(matches({ packages: ['other/blender@4.*'] }), false);
  assert.equal(matches({ packages: ['povray/povray'] }), false, 'a package with no family matches no named family');
  assert.equal(matches({ packages: ['povray@3.8.*'] }), false);
  assert.equal(matches({ packages: ['povray', 'maya'] }), false);
  const miss = missingOn(toProfile({ packages: ['povray@3.8.*', 'maya@2024'] }), anInventory());
  assert.deepEqual(miss, ['needs povray@3.8.*, has povray 3.7.0.10', 'needs maya@2024, has no maya']);
});

test('profile - licenses must all be held, compared case-insensitively', () => {
  assert.equal(matches({ licenses: ['renderman', 'ARNOLD'] }), true);
  assert.equal(matches({ licenses: ['arnold', 'houdini'] }), false);
  assert.deepEqual(missingOn(toProfile({ licenses: ['houdini'] }), anInventory()), ['needs license houdini']);
});

test('profile - missingOn lists each unmet requirement in order', () => {
  const miss = missingOn(toProfile({ machine: 'mips/*', os: 'irix@6.5', cpu: 'amd/*', cpuMhz: 3000, swapMb: 4096 }), anInventory());
  assert.deepEqual(miss, [
    'needs machine mips/*, is x86_64/pc',
    'needs os irix@6.5, runs linux/linux@6.1.0',
    'needs cpu amd/*, has intel/Xeon E5-2680',
    'needs 3000 MHz CPUs, has 2400',
    'needs 4096 MB swap, has 2048',
  ]);
});

test('profile - parsePattern splits family, type and version parts', () => {
  assert.deepEqual(parsePattern('f', 'irix@6.*'), { family: null, type: 'irix', version: ['6', '*'], text: 'irix@6.*' });
  assert.deepEqual(parsePattern('f', ' sgi/irix@6.5 '), { family: 'sgi', type: 'irix', version: ['6', '5'], text: 'sgi/irix@6.5' });
  assert.equal(parsePattern('f', 'irix@*').version, null);
});

test('profile - bad patterns are RB_BAD_SPEC naming the field', () => {
  badSpec(() => toProfile({ os: 'a/b/c' }), 'requirements.os');
  badSpec(() => toProfile({ os: 'linux@6..1' }), 'requirements.os');
  badSpec(() => toProfile({ os: 'linux@' }), 'requirements.os');
  badSpec(() => toProfile({ os: 'linux@6.x?' }), 'requirements.os');
  badSpec(() => toProfile({ os: '/linux' }), 'requirements.os');
  badSpec(() => toProfile({ machine: 'x86_64@1' }), 'requirements.machine');
  badSpec(() => toProfile({ cpu: 'intel/xeon@5' }), 'requirements.cpu');
  badSpec(() => toProfile({ cpu: 'in$tel' }), 'requirements.cpu');
  badSpec(() => toProfile({ packages: ['povray@3.7.*', ''] }), 'requirements.packages[1]');
  badSpec(() => toProfile({ packages: ['povray@3.7.*', 'maya@2024@1'] }), 'requirements.packages[1]');
});
