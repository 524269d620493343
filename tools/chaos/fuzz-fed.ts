import { jetstream } from '@nats-io/jetstream';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { deflateRawSync } from 'node:zlib';
import { BUNDLE_VERSION, encodeAny, encodeManifest, linkCodecs, PROTOCOL_MAJOR, subjects, type Codec } from '../../protocol/index.ts';
import { newBundleId } from '../../sites/bundles/index.ts';
import { bundleKey } from '../../sites/links/transfer-plan.ts';
import { caseRng, randomSeed, type Rng } from './fuzz-prng.ts';

/**
 * A fuzzer of a site's federation subjects (issue 15, "Hostile input at the boundary"): what a
 * hostile peer `from` (or a wrong credential) can send at site `to`. Subjects with replies
 * (`rb.fedsvc.<to>.<from>.ping`, `rb.<to>.link.status`, `rb.<to>.link.release`) must answer every
 * malformed request with an error naming the problem; the one-way ones (`rb.fed.<to>.<from>.link.hello`,
 * the peer's outbox `rbq.<from>.<to>.b.<key>.<kind>`) must drop it with a log line; and a credential
 * that may not send on a subject must be refused by the server. `sched.intake.<peer>` and
 * `sched.remote.<peer>` are fuzzed with their own credential by the farm fuzzer (fuzz.ts: every
 * request of the catalog); here only the wrong credentials. The caller checks the links afterwards
 * (a valid bundle still crosses) and what its process logged.
 */
export interface FedFuzzOptions {
  /** The site under attack and the hostile peer (linked to it). */
  to: string;
  from: string;
  /** Connections: the peer's site link on its own FARM (sends hellos and pings), the peer's link user in its DMZ of `to` (its outbox), `to`'s operator. */
  peerLink: NatsConnection;
  peerDmz: NatsConnection;
  operator: NatsConnection;
  /** Credentials that may not send on the subjects they are tried on. */
  wrong: { name: string; nc: NatsConnection; subjects: string[] }[];
  /** Another peer of `to`, whose name the lying manifest claims. */
  other: string;
  cases: number;
  seed?: number;
  timeoutMs?: number;
}

export interface FedFinding {
  subject: string;
  index?: number;
  kind: 'no-reply' | 'not-refused' | 'bad-reply' | 'wrong-code' | 'not-forbidden';
  problem: string;
}

export interface FedSubjectReport {
  subject: string;
  sent: number;
  refused: number;
  codes: Record<string, number>;
}

export interface FedFuzzReport {
  seed: number;
  subjects: FedSubjectReport[];
  /** The bundle offered in the peer's outbox whose manifest names another sender (the caller checks it was refused). */
  lie: { bundleId: string; claims: string };
  /** Publishes the server refused to a wrong credential: `<who> <subject>`. */
  forbidden: string[];
  findings: FedFinding[];
}

const FAMILIES = ['random-bytes', 'random-msgpack', 'mutated', 'wrong-major', 'oversize'] as const;

function randomValue(r: Rng, depth = 0): unknown {
  switch (r.int(0, depth > 2 ? 4 : 6)) {
    case 0: return r.int(-1e9, 1e9);
    case 1: return r.string(r.int(0, 40));
    case 2: return r.bool();
    case 3: return null;
    case 4: return r.bytes(r.int(0, 64));
    case 5: return Array.from({ length: r.int(0, 4) }, () => randomValue(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: r.int(0, 4) }, () => [r.string(r.int(1, 8)), randomValue(r, depth + 1)]));
  }
}

/** One malformed payload for `codec` built from a valid `base` (only what the codec refuses is returned). */
function malformedCase(r: Rng, index: number, codec: Codec<unknown>, base: Record<string, unknown>, limit: number): { family: string; data: Uint8Array } | undefined {
  const family = FAMILIES[index % FAMILIES.length]!;
  let data: Uint8Array;
  if (family === 'random-bytes') data = r.bytes(r.int(0, 256));
  else if (family === 'random-msgpack') data = encodeAny(randomValue(r));
  else if (family === 'wrong-major') data = encodeAny({ ...base, v: r.bool() ? PROTOCOL_MAJOR + r.int(1, 50) : r.string(3) });
  else if (family === 'oversize') data = encodeAny({ ...base, [Object.keys(base)[r.int(1, Object.keys(base).length - 1)] ?? 'x']: r.string(Math.max(0, limit - 4096)) });
  else {
    const keys = Object.keys(base);
    const v: Record<string, unknown> = { ...base };
    const k = keys[r.int(0, keys.length - 1)]!;
    if (r.bool(0.3)) delete v[k];
    else v[k] = randomValue(r);
    if (r.bool(0.2)) v[r.string(6)] = randomValue(r);
    data = encodeAny(v);
  }
  try {
    codec.decode(data);
    return undefined; // valid after all: not a malformed case
  } catch {
    return { family, data };
  }
}

/** Fuzzes the federation subjects of `to` as `from`; see FedFuzzOptions. */
export async function runFedFuzz(o: FedFuzzOptions): Promise<FedFuzzReport> {
  const seed = o.seed ?? randomSeed();
  const timeout = o.timeoutMs ?? 3_000;
  const findings: FedFinding[] = [];
  const reports: FedSubjectReport[] = [];
  // a fixed time in the valid bases, so that a seed replays the same bytes
  const at = 1_700_000_000_000;
  const limit = Math.min(o.peerLink.info?.max_payload ?? 1 << 20, o.operator.info?.max_payload ?? 1 << 20);

  // requests with replies: each malformed one answered ok: false, with an RB_ code and a message
  // and a well-formed one naming a peer `to` has no link to (itself, an unknown name) refused as RB_BAD_PEER
  const noPeer = [{ v: PROTOCOL_MAJOR, peer: 'nosuchpeer' }, { v: PROTOCOL_MAJOR, peer: o.to }];
  const requests: { subject: string; nc: NatsConnection; codec: Codec<unknown>; reply: Codec<unknown>; base: Record<string, unknown>; identity?: unknown[] }[] = [
    { subject: subjects.fedSvc(o.to, o.from, 'ping'), nc: o.peerLink, codec: linkCodecs.ping as Codec<unknown>, reply: linkCodecs.pingReply as Codec<unknown>, base: { v: PROTOCOL_MAJOR, at } },
    { subject: subjects.linkStatus(o.to), nc: o.operator, codec: linkCodecs.statusRequest as Codec<unknown>, reply: linkCodecs.statusReply as Codec<unknown>, base: { v: PROTOCOL_MAJOR, peer: o.from }, identity: noPeer },
    { subject: subjects.linkRelease(o.to), nc: o.operator, codec: linkCodecs.releaseRequest as Codec<unknown>, reply: linkCodecs.releaseReply as Codec<unknown>, base: { v: PROTOCOL_MAJOR, peer: o.from }, identity: noPeer },
  ];
  for (const t of requests) {
    const rep: FedSubjectReport = { subject: t.subject, sent: 0, refused: 0, codes: {} };
    reports.push(rep);
    for (const [k, body] of (t.identity ?? []).entries()) {
      rep.sent += 1;
      const a = await t.nc.request(t.subject, t.codec.encode(body), { timeout }).then((m) => t.reply.decode(m.data) as { ok: boolean; error?: { code: string; message: string } }, (err: Error) => err);
      if (a instanceof Error) findings.push({ subject: t.subject, index: -1 - k, kind: 'no-reply', problem: `wrong peer ${JSON.stringify(body)}: ${a.message}` });
      else if (a.ok || a.error?.code !== 'RB_BAD_PEER') findings.push({ subject: t.subject, index: -1 - k, kind: 'wrong-code', problem: `wrong peer ${JSON.stringify(body)}: answered ${JSON.stringify(a.ok ? 'ok' : a.error)}, not RB_BAD_PEER` });
      else {
        rep.refused += 1;
        rep.codes.RB_BAD_PEER = (rep.codes.RB_BAD_PEER ?? 0) + 1;
      }
    }
    for (let i = 0; i < o.cases; i++) {
      const c = malformedCase(caseRng(seed, t.subject, i), i, t.codec, t.base, limit);
      if (!c || c.data.length > limit) continue;
      rep.sent += 1;
      let answer: unknown;
      try {
        const m = await t.nc.request(t.subject, c.data, { timeout });
        answer = t.reply.decode(m.data);
      } catch (err) {
        findings.push({ subject: t.subject, index: i, kind: 'no-reply', problem: `${c.family}: ${(err as Error).message}` });
        continue;
      }
      const a = answer as { ok: boolean; error?: { code: string; message: string } };
      if (a.ok) {
        findings.push({ subject: t.subject, index: i, kind: 'not-refused', problem: `${c.family}: a malformed request (${c.data.length} bytes) was answered ok` });
      } else if (!a.error || !/^RB_[A-Z_]+$/.test(a.error.code) || a.error.message.length === 0) {
        findings.push({ subject: t.subject, index: i, kind: 'bad-reply', problem: `${c.family}: the refusal names no problem: ${JSON.stringify(a.error)}` });
      } else {
        rep.refused += 1;
        rep.codes[a.error.code] = (rep.codes[a.error.code] ?? 0) + 1;
      }
    }
  }

  // one-way: the peer's hellos (core NATS) and its outbox (JetStream, as its link publishes them)
  const oneWay: { subject: (i: number) => string; send: (subject: string, data: Uint8Array) => Promise<unknown>; codec: Codec<unknown>; base: Record<string, unknown>; name: string }[] = [
    { name: subjects.fed(o.to, o.from, 'link.hello'), subject: () => subjects.fed(o.to, o.from, 'link.hello'), send: async (s, d) => o.peerLink.publish(s, d), codec: linkCodecs.hello as Codec<unknown>, base: { v: PROTOCOL_MAJOR, instance: 'x', outSeq: 0, inSeq: 0, maxPayload: 1 << 20, publicKey: 'k', at } },
  ];
  const js = jetstream(o.peerDmz);
  for (const kind of ['manifest', 'want', 'end', 'receipt'] as const) {
    const base: Record<string, unknown> = kind === 'want' ? { v: PROTOCOL_MAJOR, bundleId: 'x', attempt: 'a', want: [] }
      : kind === 'end' ? { v: PROTOCOL_MAJOR, bundleId: 'x', attempt: 'a', blobs: 0, bytes: 0 }
        : kind === 'receipt' ? { v: PROTOCOL_MAJOR, bundleId: 'x', ok: true, missing: [] }
          : { v: PROTOCOL_MAJOR, bundleId: 'x', name: 'x.rbb', attempt: 'a', manifest: new Uint8Array(0), layout: new Uint8Array(0), trailer: 1024, size: 0 };
    oneWay.push({ name: `rbq.${o.from}.${o.to}.b.<key>.${kind}`, subject: (i) => subjects.fedQueue(o.from, o.to, `fz${seed.toString(36)}${i}`, kind), send: (s, d) => js.publish(s, d), codec: linkCodecs[kind] as Codec<unknown>, base });
  }
  // the server's limit for what the peer's DMZ stores (the JetStream publish itself is refused above it)
  const dmzLimit = o.peerDmz.info?.max_payload ?? limit;
  for (const t of oneWay) {
    const rep: FedSubjectReport = { subject: t.name, sent: 0, refused: 0, codes: {} };
    reports.push(rep);
    for (let i = 0; i < o.cases; i++) {
      const c = malformedCase(caseRng(seed, t.name, i), i, t.codec, t.base, Math.min(limit, dmzLimit));
      if (!c || c.data.length > Math.min(limit, dmzLimit) - 1024) continue;
      await t.send(t.subject(i), c.data);
      rep.sent += 1;
    }
  }
  // a well-formed offer whose manifest says it comes from another peer: refused before anything is written
  const lieId = newBundleId();
  const manifest = encodeManifest({ version: BUNDLE_VERSION, kind: 'status', bundleId: lieId, from: o.other, to: o.to, route: [], createdAt: at, files: [] });
  await js.publish(
    subjects.fedQueue(o.from, o.to, bundleKey(lieId), 'manifest'),
    linkCodecs.manifest.encode({ v: PROTOCOL_MAJOR, bundleId: lieId, name: `${lieId}.rbb`, attempt: 'fuzz', manifest, layout: deflateRawSync(Buffer.alloc(512)), trailer: 1024, size: 2048 }),
  );
  await o.peerLink.flush();

  // wrong credentials: the server refuses each publish (a permissions violation on that connection)
  const forbidden: string[] = [];
  for (const w of o.wrong) {
    const seen = new Set<string>();
    // the iterator ends when the caller closes the connection
    void (async () => {
      for await (const s of w.nc.status()) {
        if (s.type === 'error' && s.error instanceof PermissionViolationError && s.error.operation === 'publish') seen.add(s.error.subject);
      }
    })();
    for (const subject of w.subjects) w.nc.publish(subject, encodeAny({ v: PROTOCOL_MAJOR }));
    await w.nc.flush();
    const until = Date.now() + timeout;
    while (Date.now() < until && w.subjects.some((s) => !seen.has(s))) await new Promise((r) => setTimeout(r, 20));
    for (const subject of w.subjects) {
      if (seen.has(subject)) forbidden.push(`${w.name} ${subject}`);
      else findings.push({ subject, kind: 'not-forbidden', problem: `${w.name} published on ${subject} and the server did not refuse it` });
    }
  }
  return { seed, subjects: reports, lie: { bundleId: lieId, claims: o.other }, forbidden, findings };
}

export function formatFedReport(r: FedFuzzReport): string {
  const lines = [`fed fuzz (seed ${r.seed}):`];
  for (const s of r.subjects) lines.push(`  ${s.subject}: ${s.sent} sent${s.refused ? `, ${s.refused} refused (${Object.entries(s.codes).map(([c, n]) => `${c} ${n}`).join(', ')})` : ''}`);
  lines.push(`  wrong credentials refused by the server: ${r.forbidden.length}`);
  for (const f of r.findings) lines.push(`  FINDING ${f.kind} ${f.subject}${f.index !== undefined ? `#${f.index}` : ''}: ${f.problem}`);
  if (r.findings.length === 0) lines.push('  no findings');
  return lines.join('\n');
}
