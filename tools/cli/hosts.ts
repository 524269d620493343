import { PROTOCOL_MAJOR, codecs, subjects, type HostRecord } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm } from './farm-client.ts';
import { ago, cut, json, megabytes, paint, table } from './format.ts';

/** `renderbus hosts`: the registry's resource database (`reg.list`). */
export async function hostsCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-hosts');
  try {
    const { hosts } = await ask(fc, 'registry', subjects.regList(fc.site), codecs.listRequest, { v: PROTOCOL_MAJOR }, codecs.listReply);
    if (c.opts.json) {
      c.io.stdout.write(json(hosts));
      return ExitCode.Ok;
    }
    if (hosts.length === 0) {
      c.io.stdout.write(`no render hosts on site ${fc.site} (start one: renderbus render-server)\n`);
      return ExitCode.Ok;
    }
    const p = paint(c.io.stdout);
    const now = Date.now();
    c.io.stdout.write(table(['HOST', 'CPU', 'RAM', 'OS', 'PACKAGES', 'SLOTS', 'LAST SEEN'], hosts.map((h) => hostRow(h, now, p.yellow))));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

export function hostRow(h: HostRecord, now: number, warn: (s: string) => string = (s) => s): string[] {
  const inv = h.inventory;
  const busy = h.slots.filter((s) => s.state === 'busy').length;
  const free = h.slots.filter((s) => s.state === 'idle').length;
  const draining = h.draining ? warn(' draining') : '';
  return [
    h.host,
    cut(`${inv.cpu.count}× ${inv.cpu.type}${inv.cpu.speedMhz ? ` ${Math.round(inv.cpu.speedMhz)} MHz` : ''}`, 40),
    megabytes(inv.ramMb),
    `${inv.os.type} ${inv.os.version}`,
    cut(inv.packages.map((pk) => `${pk.name} ${pk.version}`).join(', ') || '-', 40),
    `${busy} busy / ${free} free${draining}`,
    ago(h.lastSeenAt, now),
  ];
}
