import type { ChaosReport, KillRecord, VictimKind } from './driver.ts';

const s = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);

function stats(values: number[]): string {
  if (values.length === 0) return '-';
  const v = [...values].sort((a, b) => a - b);
  const median = v[Math.floor((v.length - 1) / 2)]!;
  return `median ${s(median)}, max ${s(v[v.length - 1])}`;
}

const KIND_ORDER: VictimKind[] = ['nats-server', 'registry', 'scheduler', 'render-server', 'site'];
const WHAT_READY: Record<VictimKind, string> = {
  'nats-server': 'scheduler and registry answer',
  registry: 'lists every render server again',
  scheduler: 'answers again',
  'render-server': 'registered again',
  site: 'every actor serves',
};
const WHAT_PROGRESS: Record<VictimKind, string> = {
  'nats-server': 'a frame done',
  registry: 'a frame done',
  scheduler: 'a frame done',
  'render-server': 'a frame done on that host',
  site: 'a frame done',
};

const CAUSE: Record<string, string> = {
  'render-server': 'its render server killed before the result was taken',
  site: 'whole-site kill',
  scheduler: 'scheduler kill',
  'nats-server': 'nats-server kill',
  unexplained: 'unexplained',
};

function killLine(k: KillRecord): string {
  const t = `${(k.at / 1000).toFixed(1)} s`.padStart(8);
  const victim = (k.kind === 'site' ? 'WHOLE SITE' : k.victim).padEnd(12);
  const status = k.status === 'recovered' ? '' : `  [${k.status}]`;
  const overlap = k.overlapped.length > 0 ? `  (overlapped ${k.overlapped.join(', ')})` : '';
  return `  #${String(k.n).padEnd(3)}${t}  ${victim} down ${s(k.downMs).padStart(6)}  ready ${s(k.readyMs).padStart(6)}  progress ${s(k.progressMs).padStart(6)}  outage ${s(k.outageMs).padStart(6)}${status}${overlap}`;
}

/** The report as text for a terminal. */
export function formatReport(r: ChaosReport): string {
  const out: string[] = [];
  const jobsDone = r.jobs.filter((j) => j.state === 'done').length;
  out.push(
    `renderbus chaos: ${r.ok ? 'PASSED' : r.interrupted ? 'INTERRUPTED' : 'FAILED'}  (seed ${r.seed}; rerun: npm run chaos -- --seconds ${Math.round(r.chaosMs / 1000)} --seed ${r.seed})`,
    `  ${s(r.chaosMs)} of chaos, ${s(r.settleMs)} to finish after it, ${s(r.totalMs)} in all; ${r.farm.renderServers} render servers × ${r.farm.slots} slots; site ${r.site}`,
    `  jobs: ${jobsDone} of ${r.jobs.length} done (${r.jobs.filter((j) => j.kind === 'command').length} command, ${r.jobs.filter((j) => j.kind === 'povray').length} POV-Ray), ${r.framesTotal} frames, ${r.jobs.reduce((n, j) => n + j.valid, 0)} valid outputs`,
  );
  for (const j of r.jobs) {
    const tries = j.submitTries > 1 ? `, submitted in ${j.submitTries} tries` : '';
    out.push(`    ${j.name.padEnd(8)} ${j.state.padEnd(9)} ${String(j.frames).padStart(4)} frames, ${j.valid} valid, highest attempt ${j.maxAttempt}${tries}`);
  }

  const byKind = new Map<VictimKind, KillRecord[]>();
  for (const k of r.kills) byKind.set(k.kind, [...(byKind.get(k.kind) ?? []), k]);
  out.push('', `kills: ${r.kills.length} (${KIND_ORDER.filter((k) => byKind.has(k)).map((k) => `${k} ${byKind.get(k)!.length}`).join(', ')})`);
  out.push('  down: kill → restart; ready: restart → it serves; progress: restart → the farm completes a frame; outage: kill → that frame');
  for (const k of r.kills) out.push(killLine(k));
  out.push('', 'recovery by victim (recovered ones):');
  for (const kind of KIND_ORDER) {
    const ks = byKind.get(kind);
    if (!ks) continue;
    const rec = ks.filter((k) => k.status === 'recovered');
    const ready = ks.filter((k) => k.readyMs !== undefined).map((k) => k.readyMs!);
    const other = ks.length - rec.length;
    out.push(
      `  ${kind.padEnd(13)} ready (${WHAT_READY[kind]}): ${stats(ready)}; ${WHAT_PROGRESS[kind]}: ${stats(rec.map((k) => k.progressMs!))}; outage ${stats(rec.map((k) => k.outageMs!))}${other > 0 ? `; ${other} not measured (${ks.filter((k) => k.status !== 'recovered').map((k) => k.status).join(', ')})` : ''}`,
    );
  }

  const causes = new Map<string, number>();
  for (const t of r.renderedTwice) causes.set(t.cause, (causes.get(t.cause) ?? 0) + 1);
  const byCause = [...causes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${CAUSE[c] ?? c} ${n}`).join(', ');
  out.push('', `frames rendered twice (completed runs in the ledgers): ${r.renderedTwice.length}${byCause ? ` (likely cause: ${byCause})` : ''}; runs interrupted by a kill: ${r.interruptedRuns}`);
  for (const t of r.renderedTwice.slice(0, 25)) {
    const runs = t.runs.map((x) => `${x.taskId.replace(/^.*\./, 't')}-a${x.attempt} on ${x.host} done at ${(x.endAt / 1000).toFixed(1)} s`).join(', ');
    out.push(`  ${t.job} frame ${t.frame}: ${runs}`, `      cause: ${t.kills.join('; ')}${t.note ? `; ${t.note}` : ''}`);
  }
  if (r.renderedTwice.length > 25) out.push(`  ... and ${r.renderedTwice.length - 25} more`);
  if (r.povrayTasksRenderedTwice.length > 0) out.push(`  POV-Ray tasks rendered more than once: ${r.povrayTasksRenderedTwice.join(', ')}`);
  if (r.crashes.length > 0) out.push('', `actors that died on their own: ${r.crashes.map((c) => `${c.member} at ${s(c.at)}`).join(', ')}`);

  out.push('', 'checks:');
  for (const c of r.checks) {
    const mark = c.ok ? 'ok  ' : c.severity === 'warn' ? 'WARN' : 'FAIL';
    out.push(`  ${mark} ${c.name}`);
    for (const d of c.detail.slice(0, 12)) out.push(`         ${d}`);
    if (c.detail.length > 12) out.push(`         ... and ${c.detail.length - 12} more`);
  }
  const warnings = r.logSummary.slice(0, 15);
  if (warnings.length > 0) {
    out.push('', 'warnings and errors in the actor logs (count, actor, message):');
    for (const w of warnings) out.push(`  ${String(w.count).padStart(5)}  ${w.member.padEnd(14)} ${w.level.padEnd(5)} ${w.msg}`);
  }
  if (r.diagnostics.length > 0) {
    out.push('', 'diagnostics:');
    for (const d of r.diagnostics) out.push(...d.split('\n').map((l) => `  ${l}`));
  }
  out.push('', r.dirKept ? `run directory kept: ${r.dir} (logs in ${r.dir}/logs, outputs in ${r.dir}/out, ledgers in ${r.dir}/ledgers)` : 'run directory removed');
  return out.join('\n');
}
