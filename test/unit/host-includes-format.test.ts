import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostRecord, PackageInfo } from '../../protocol/index.ts';
import { paint } from '../../tools/cli/format.ts';
import { describeHost, describeHosts, hostViews, type UpHost } from '../../tools/cli/manager-format.ts';
import { anInventory } from '../helpers/builders.ts';

const plain = paint({ isTTY: false });
const NOW = 1_800_000_000_000;

const aHost = (host: string, packages: PackageInfo[]): HostRecord => ({
  host, serverId: 's1', inventory: anInventory({ packages }), slots: [{ index: 0, state: 'idle', since: NOW }],
  registeredAt: NOW - 60_000, lastSeenAt: NOW - 1_000, load: 0.5, draining: false,
});

test('manager-format - `host` and `hosts` show where POV-Ray\'s includes are, and a host without them', () => {
  const views = hostViews([
    aHost('node-full', [{ name: 'povray', version: '3.7.0.10', path: '/usr/bin/povray', includePath: ['/usr/share/povray-3.7', '/usr/share/povray-3.7/include'], includes: '/usr/share/povray-3.7/include' }]),
    aHost('node-bare', [{ name: 'povray', version: '3.7.0.10', path: '/usr/bin/povray', includePath: ['/usr/share/povray-3.7'] }]),
    aHost('node-told', [{ name: 'povray', version: '3.7.0.10' }]), // --packages: the probe did not look
  ], [], []);
  const up = (host: string) => views.find((v): v is UpHost => v.host === host && v.state === 'up');
  const [full, bare, told] = [up('node-full'), up('node-bare'), up('node-told')];
  assert.match(describeHost(full!, plain, NOW), /^PACKAGE +VERSION +FAMILY +PATH +INCLUDES\npovray +3\.7\.0\.10 +- +\/usr\/bin\/povray +\/usr\/share\/povray-3\.7\/include$/m);
  assert.match(describeHost(bare!, plain, NOW), /^povray +3\.7\.0\.10 +- +\/usr\/bin\/povray +missing \(include path: \/usr\/share\/povray-3\.7\)$/m);
  assert.match(describeHost(told!, plain, NOW), /^PACKAGE +VERSION +FAMILY +PATH\npovray +3\.7\.0\.10 +- +-$/m);
  const list = describeHosts(views, plain, NOW);
  assert.match(list, /^node-bare .* povray 3\.7\.0\.10 \(no includes\) /m);
  assert.match(list, /^node-full .* povray 3\.7\.0\.10 /m);
  assert.doesNotMatch(list, /^node-(full|told) .*no includes/m);
});
