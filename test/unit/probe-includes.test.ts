import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { povrayIncludes, probeHost } from '../../actors/render-server/index.ts';

test('probe - POV-Ray\'s include path is read from its povray.ini, with where its standard includes are', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-probe-inc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  await mkdir(join(root, 'etc/povray/3.7'), { recursive: true });
  await mkdir(join(root, 'share/include'), { recursive: true });
  await writeFile(join(root, 'etc/povray/3.7/povray.ini'), `Library_Path="${root}/share"\nLibrary_Path="${root}/share/include"\n`);
  const home = join(dir, 'home');
  // povray-includes not installed: the path is there, the includes are not
  assert.deepEqual(povrayIncludes({ root, home }), { includePath: [`${root}/share`, `${root}/share/include`] });
  await writeFile(join(root, 'share/include/colors.inc'), '#declare Red = rgb <1, 0, 0>;\n');
  assert.deepEqual(povrayIncludes({ root, home }), { includePath: [`${root}/share`, `${root}/share/include`], includes: `${root}/share/include` });
});

test('probe - this host reports POV-Ray with the include path of its own povray.ini', async () => {
  // the bootstrap installs povray and povray-includes (Debian: /etc/povray/3.7/povray.ini)
  const inv = await probeHost();
  const povray = inv.packages.find((p) => p.name === 'povray');
  assert.ok(povray, `no povray in ${JSON.stringify(inv.packages)}`);
  assert.ok(povray.includePath?.includes('/usr/share/povray-3.7/include'), JSON.stringify(povray));
  assert.equal(povray.includes, '/usr/share/povray-3.7/include');
});
