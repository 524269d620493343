import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chainProblem, checkManifest, decodeManifest, encodeManifest, forwardChoice, forwardRoute, jobPath, MAX_CHAIN_SITES, newsVia, prepareJob,
  type BundleBill, type BundleManifest, type JobSpec, type MatchBody,
} from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { outsource, outsourceReason, applyRemote } from '../../actors/scheduler/outsource.ts';
import { UNRENDERABLE_SETTLE_MS, unrenderableVerdict } from '../../actors/scheduler/outsource-policy.ts';
import { chainedBill, newsRoute, rateCardOf } from '../../sites/remote-jobs/index.ts';
import { aJobSpec } from '../helpers/builders.ts';

const job = (route: string[], from: string, over: Partial<JobSpec> = {}) => ({
  bundleId: 'b-1', from, route, jobRef: { site: from, job: 'j-1' }, job: { chain: true, ...over },
});

test('fed chain - a job bundle\'s path: loops, consent and the limit', () => {
  assert.deepEqual(jobPath({ from: 'studio', route: [] }), ['studio'], 'a bundle that names no path came from its sender');
  assert.equal(chainProblem('v1', job(['studio'], 'studio')), undefined, 'first hop');
  assert.equal(chainProblem('v1', job([], 'studio', { chain: undefined })), undefined, 'first hop without consent: fine (it is not passed on yet)');
  assert.equal(chainProblem('v2', job(['studio', 'v1'], 'v1')), undefined, 'second hop with consent');

  const loop = chainProblem('v1', job(['studio', 'v1', 'v2'], 'v2'));
  assert.equal(loop?.code, 'RB_CHAIN_LOOP');
  assert.equal(loop?.message, "v2's job j-1 came along studio → v1 → v2, which already passed this site (v1): refused, it would go round");
  assert.equal(chainProblem('studio', job(['studio', 'v1'], 'v1'))?.code, 'RB_CHAIN_LOOP', 'back to its owner');
  assert.match(chainProblem('v3', job(['studio', 'v1', 'studio', 'v2'], 'v2'))?.message ?? '', /names a site twice/);

  const unasked = chainProblem('v2', job(['studio', 'v1'], 'v1', { chain: false }));
  assert.equal(unasked?.code, 'RB_CHAIN_REFUSED');
  assert.match(unasked?.message ?? '', /passed on along studio → v1, but studio did not consent to chaining \(chain: true\)/);

  const long = chainProblem('v4', job(['studio', 'v1', 'v2', 'v3'], 'v3'));
  assert.equal(long?.code, 'RB_CHAIN_REFUSED');
  assert.match(long?.message ?? '', new RegExp(`would hold 5 sites, more than ${MAX_CHAIN_SITES}`));
  assert.equal(chainProblem('v3', job(['studio', 'v1', 'v2'], 'v2')), undefined, `${MAX_CHAIN_SITES} sites in all is within the limit`);

  assert.equal(chainProblem('v2', job(['studio', 'v1'], 'v9'))?.code, 'RB_BAD_BUNDLE', 'a path that does not end with its sender');
});

test('fed chain - where a site may pass a job on, and the path it writes', () => {
  assert.deepEqual(forwardChoice({ chain: true }, ['studio'], 'v1', ['v2', 'v3']), { to: 'v2' });
  assert.deepEqual(forwardChoice({ chain: true }, ['studio'], 'v1', ['studio', 'v3']), { to: 'v3' }, 'never back along its path');
  assert.match((forwardChoice({}, ['studio'], 'v1', ['v2']) as { why: string }).why, /studio did not consent/);
  assert.match((forwardChoice({ chain: true }, ['studio'], 'v1', []) as { why: string }).why, /passes jobs it cannot render to no linked peer/);
  assert.match((forwardChoice({ chain: true }, ['studio'], 'v1', ['studio']) as { why: string }).why, /already on its path studio/);
  assert.match((forwardChoice({ chain: true }, ['studio', 'v1', 'v2'], 'v3', ['v4']) as { why: string }).why, /no room for another site/);
  assert.deepEqual(forwardRoute(['studio'], 'v1'), ['studio', 'v1']);
});

test('fed chain - news says where the job went; a route that lies is refused', () => {
  const news = (route: string[]) => ({ bundleId: 'n', route });
  assert.deepEqual(newsVia('studio', 'v1', news([])), [], 'rendered by the sender itself');
  assert.deepEqual(newsVia('studio', 'v1', news(['v1', 'v2'])), ['v2']);
  assert.throws(() => newsVia('studio', 'v1', news(['v2', 'v1'])), /does not start with its sender v1/);
  assert.throws(() => newsVia('studio', 'v1', news(['v1', 'studio'])), /names a site twice/);
  assert.throws(() => newsVia('studio', 'v1', news(['v1', 'v2', 'v3', 'v4'])), /longer than the chain limit/);
  assert.deepEqual(newsRoute('v1', { outsourced: { site: 'v2', bundleId: 'job-x', state: 'started', back: 0 } }), ['v1', 'v2']);
  assert.equal(newsRoute('v1', {}), undefined, 'a job rendered here says nothing of a route');
});

const NONE: MatchBody = { hosts: [], closest: [{ host: 'rs1', missing: ['needs shaders@*, has no shaders'] }], totalHosts: 1 };

test('fed chain - the site\'s policy sends a peer\'s job on only with consent, never back to that peer', () => {
  const book = new JobBook();
  const add = (id: string, spec: Partial<JobSpec>) => {
    const s = aJobSpec({ requirements: { packages: ['shaders@*'] }, ...spec });
    return book.add(id, s, prepareJob(s), 1, { site: 'studio', job: `s-${id}` });
  };
  const unasked = add('j1', {});
  assert.match((unrenderableVerdict(unasked, NONE, UNRENDERABLE_SETTLE_MS, ['v2'], ['studio', 'v2']) as { keep: string }).keep, /sent on only with its owner's consent/);
  const asked = add('j2', { chain: true });
  assert.deepEqual(unrenderableVerdict(asked, NONE, UNRENDERABLE_SETTLE_MS, ['studio', 'v2'], ['studio', 'v2']), { send: 'v2', why: 'no host here can render it (rs1 needs shaders@*, has no shaders)' });
  assert.match((unrenderableVerdict(asked, NONE, UNRENDERABLE_SETTLE_MS, ['studio'], ['studio', 'v2']) as { keep: string }).keep, /names only studio, where it came from/);
  // its view shows the whole path once the peer's news names it
  outsource(book, asked, { peer: 'v2', why: 'w' });
  applyRemote(book, asked, { v: 1, jobId: 'j2', bundleId: 'v2.j2.started', state: 'started', via: ['v3'], at: 2 }, 2);
  assert.equal(book.summary(asked).outsourced?.via?.join(','), 'v3');
  assert.match(outsourceReason(asked)?.text ?? '', /^outsourced to v2 → v3: /);
});

test('fed chain - a bill carries the next site\'s bill as it came, beside its own lines and margin', () => {
  const own: BundleBill = { currency: 'EUR', rate: { perCoreHourMinor: 0, perGbMinor: 0, minimumMinor: 0 }, frames: [], totals: { frames: 0, wallMs: 0, cpuMs: 0, bytes: 0, amountMinor: 0 } };
  const theirs: BundleManifest = {
    version: 1, kind: 'bill', bundleId: 'v2.j-9.bill', from: 'v2', to: 'v1', route: [], createdAt: 1, jobRef: { site: 'v1', job: 'j-9' }, files: [],
    bill: { ...own, frames: [{ frame: 1, host: 'rs2', wallMs: 500, cpuMs: 400, bytes: 10 }], totals: { frames: 1, wallMs: 500, cpuMs: 400, bytes: 10, amountMinor: 120 } },
  };
  const bytes = encodeManifest(theirs);
  const bill = chainedBill(own, 25, [{ site: 'v2', manifest: bytes, signature: new Uint8Array(64).fill(7), bill: theirs.bill! }]);
  assert.equal(bill.totals.amountMinor, 25, 'our amount is our lines and our margin; theirs stays theirs');
  assert.equal(bill.marginMinor, 25);
  // it travels in a manifest, bytes intact, and what it carries decodes to their bill
  const carried: BundleManifest = { ...theirs, bundleId: 'v1.j-1.bill', from: 'v1', to: 'studio', jobRef: { site: 'studio', job: 'j-1' }, route: ['v1', 'v2'], bill };
  const back = decodeManifest(encodeManifest(checkManifest(carried)));
  const via = back.bill!.via![0]!;
  assert.equal(via.site, 'v2');
  assert.deepEqual(Buffer.from(via.manifest), Buffer.from(bytes));
  assert.deepEqual(decodeManifest(via.manifest).bill?.totals.amountMinor, 120);
  assert.equal(rateCardOf({ forwardMinor: 25 }, 'studio').forwardMinor, 25);
  assert.throws(() => rateCardOf({ forwardMinor: 2.5 }, 'studio'), /forwardMinor must be a whole number/);
});
