import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzFedSites, type FedFuzzRun } from '../../tools/chaos/fuzz-fed-main.ts';
import { formatFedReport } from '../../tools/chaos/fuzz-fed.ts';

// Issue 15, "Hostile input at the boundary": the federation subjects fuzzed on three real
// nats-servers with leaf links (tools/chaos/fuzz-fed.ts). A short seeded run here; `npm run chaos
// -- --fed` runs it longer. FUZZ_SEED=<seed> replays another run.
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 15;
let run: FedFuzzRun;

before(async () => {
  run = await fuzzFedSites({ cases: 15, seed: SEED });
});

const explain = (what: string) => `${what}\n${formatFedReport(run.report)}\nafter: ${run.after.join('\n')}`;

test('fuzz-fed - every malformed request on a federation subject with replies is refused with an RB_ code and a message', () => {
  const withReplies = run.report.subjects.filter((s) => !s.subject.startsWith('rbq.') && !s.subject.startsWith('rb.fed.'));
  assert.equal(withReplies.length, 3, explain('ping, link.status and link.release'));
  for (const s of withReplies) {
    assert.ok(s.sent >= 10, explain(`${s.subject}: only ${s.sent} sent`));
    for (const code of ['RB_DECODE_FAILED', 'RB_SCHEMA_MISMATCH', 'RB_PROTOCOL_MISMATCH', ...(s.subject.includes('.link.') ? ['RB_BAD_PEER'] : [])]) {
      assert.ok((s.codes[code] ?? 0) > 0, explain(`${s.subject}: no ${code}`));
    }
  }
  assert.deepEqual(run.report.findings.filter((f) => f.kind !== 'not-forbidden'), [], explain('requests not refused as they should be'));
});

test('fuzz-fed - a credential that may not send on a federation subject is refused by the server', () => {
  assert.deepEqual(run.report.findings.filter((f) => f.kind === 'not-forbidden'), [], explain('publishes the server let through'));
  assert.equal(run.report.forbidden.length, 10, explain('every wrong credential tried'));
});

test('fuzz-fed - the links come through: malformed hellos and outbox messages refused, a manifest naming another sender refused, a valid bundle crosses each way, nothing thrown', () => {
  assert.ok(run.report.subjects.filter((s) => s.subject.startsWith('rbq.')).every((s) => s.sent > 0), explain('an outbox kind not fuzzed'));
  assert.deepEqual(run.after, [], explain('after the fuzzing'));
});
