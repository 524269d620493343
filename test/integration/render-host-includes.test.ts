import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { rb, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

/** The JSON log lines of an actor process with this message. */
function logLines(p: ActorProcess, msg: string): Record<string, unknown>[] {
  return p.output.split('\n').flatMap((l) => {
    try {
      const j = JSON.parse(l) as Record<string, unknown>;
      return j.msg === msg ? [j] : [];
    } catch {
      return [];
    }
  });
}

test('render host - a POV-Ray host without its standard includes says so: probe, start warning, `host`, and every task failing at warn', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  // a host whose POV-Ray looks in a folder without colors.inc: its renderers' HOME (the render
  // server's) holds a povray.ini that hides the system's, as on a host without povray-includes
  const home = join(farm.dir, 'bare-home');
  await mkdir(join(home, '.povray', '3.7'), { recursive: true });
  await writeFile(join(home, '.povray', '3.7', 'povray.ini'), 'Library_Path="/usr/share/povray-3.7"\n');
  const scene = join(farm.dir, 'standard-include.pov');
  await copyFile(new URL('../fixtures/povray/standard-include.pov', import.meta.url), scene);

  await farm.registry();
  await farm.scheduler();
  const server = await farm.renderServer('node-bare', 1, [], { HOME: home });

  // the probe reports the include path, and no standard includes on it
  const rec = (await farm.hosts()).find((h) => h.host === 'node-bare')!;
  const povray = rec.inventory.packages.find((p) => p.name === 'povray');
  assert.deepEqual([povray?.includePath, povray?.includes], [['/usr/share/povray-3.7'], undefined], farm.logs());
  // the render server warned at start, at the default level
  const [warned] = logLines(server, "POV-Ray is installed but its standard include files (colors.inc...) are not on its include path: scenes that #include them fail on this host");
  assert.ok(warned, server.output);
  assert.equal(warned.level, 40);
  assert.deepEqual(warned.includePath, ['/usr/share/povray-3.7']);
  // `renderbus host` shows it with the packages
  const shown = rb(farm, 'host', 'node-bare');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^PACKAGE +VERSION +FAMILY +PATH +INCLUDES$/m);
  assert.match(shown.stdout, /^povray +3\.7\S* +- +\S+povray +missing \(include path: \/usr\/share\/povray-3\.7\)$/m);

  // an ordinary scene fails there as this host's missing part, not the scene's, and the render
  // server logs the failed task at warn with job, task, code and the renderer's line
  const jobId = await farm.submit({ name: 'needs-colors', scene, renderer: 'povray', frames: '1', resolution: '32x24', output: { dir: join(farm.dir, 'out') } });
  const failed = await waitUntil('the render server to log the failed task', () => logLines(server, 'task failed')[0], 30_000);
  assert.equal(failed.level, 40);
  assert.equal(failed.jobId, jobId);
  assert.equal(failed.taskId, `${jobId}.0`);
  assert.equal(failed.frames, '1');
  assert.equal(failed.code, 'RB_RENDERER_MISSING');
  assert.match(String(failed.error), /^povray: File '.*standard-include\.pov' line 4: Parse Error: Cannot open include file colors\.inc\. colors\.inc is one of POV-Ray's standard include files, which are not installed on host node-bare \(include path searched: .*, \/usr\/share\/povray-3\.7; Debian\/Ubuntu: apt-get install povray-includes\)$/);
});

test('render host - a host with POV-Ray\'s includes lists where they are in `renderbus host`', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  const server = await farm.renderServer('node-full', 1);
  const shown = rb(farm, 'host', 'node-full');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^povray +3\.7\S* +- +\S+povray +\/usr\/share\/povray-3\.7\/include$/m);
  assert.deepEqual(logLines(server, "POV-Ray is installed but its standard include files (colors.inc...) are not on its include path: scenes that #include them fail on this host"), []);
});
