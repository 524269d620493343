// @ts-check
// The renderbus web monitor: one page, four views (jobs, queue, hosts, timeline) and a job page,
// fed by the monitor's live stream (/api/live: the farm model's changes as server-sent events)
// and its JSON API (the same answers as the CLI's --json). No build step: ES modules as they are.
import { h, render } from 'preact';
import { useEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

// --- the live store: jobs, hosts and spans from the stream; frame changes go to listeners -----

/** @typedef {{ site: string, state: string, back: number, remoteJob?: string, reason?: string, heardAt?: number, why?: string, counts?: { running: number }, bill?: { currency: string, amountMinor: number, frames: number, signed: boolean } }} Outsourced */
/** @typedef {{ jobId: string, name: string, user: string, project: string, priority: number, state: string, counts: { total: number, queued: number, running: number, done: number, failed: number, inHand?: number }, submittedAt: number, startedAt?: number, finishedAt?: number, waiting?: string, etaMs?: number, outputDir: string, outsourced?: Outsourced, origin?: { site: string, job: string }, placement?: { peer?: string, text: string } }} Job */
/** @typedef {{ peer: string, state: string, since: number, rttMs?: number, lastHelloAt?: number, outgoing: { bundles: number, bytes: number }, incoming: { bundles: number, bytes: number }, reason?: string }} Link */
/** @typedef {{ id: number, host: string, slot: number, jobId: string, attempt: number, frames: number[], start: number, end?: number, outcome?: string }} Span */

const store = {
  site: '',
  connected: false,
  /** @type {Map<string, Job & { heardAt: number }>} */ jobs: new Map(),
  /** @type {Map<string, any>} */ hosts: new Map(),
  /** @type {Map<number, Span>} */ spans: new Map(),
  /** The site's links (`link.status`), once its link service answered: `{ answered, links }`. @type {{ answered: boolean, links: Link[] } | null} */ sites: null,
  /** Bumped whenever the stream brought a full state (the job page reloads its frames). */
  epoch: 0,
  /** @type {Set<() => void>} */ listeners: new Set(),
  /** @type {Set<(changes: any[]) => void>} */ frameListeners: new Set(),
  /**
   * What this page may do: `checking`, `actions` (it holds the access token), `read-only` (no
   * token, on the monitor's own machine), `needs-token` (another machine, no token).
   */
  access: 'checking',
  /** The token this page was given was refused (a new one since the link was printed?). */
  tokenRefused: false,
};
const MAX_SPANS = 5000;

function changed() {
  for (const l of store.listeners) l();
}

function applyDelta(/** @type {any} */ d) {
  const now = Date.now();
  store.site = d.site;
  if (d.full) {
    store.jobs.clear();
    store.hosts.clear();
    store.spans.clear();
    store.sites = null;
    store.epoch++;
  }
  if (d.sites) store.sites = d.sites;
  for (const j of d.jobs) store.jobs.set(j.jobId, { ...j, heardAt: now });
  for (const id of d.removedJobs) store.jobs.delete(id);
  for (const host of d.hosts) store.hosts.set(host.host, host);
  for (const s of d.spans) store.spans.set(s.id, s);
  if (store.spans.size > MAX_SPANS) {
    const ids = [...store.spans.keys()].sort((a, b) => a - b).slice(0, store.spans.size - MAX_SPANS);
    for (const id of ids) store.spans.delete(id);
  }
  if (d.frames.length > 0) for (const l of store.frameListeners) l(d.frames);
  changed();
}

// --- access: the token comes in the URL's fragment (#token=..., never sent to a server), and is
// kept for this tab; the monitor wants it in a header for actions, and from other machines

const TOKEN_KEY = 'renderbus-token';

function takeToken() {
  const m = /(?:^#|[&#/])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', `${location.pathname}${location.search}#/`); // out of the address bar and the history
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

let token = takeToken();
/** @returns {Record<string, string>} */
const tokenHeader = () => (token ? { 'x-renderbus-token': token } : {});

/** Asks the monitor what this page may do (and, shown the token, gets the cookie that lets EventSource and images read). */
async function checkAccess() {
  let r;
  try {
    r = await fetch('/api/access', { headers: tokenHeader() });
  } catch {
    r = null; // the monitor is not there (yet): ask again
  }
  if (r?.status === 401 && token) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    store.tokenRefused = true;
    return checkAccess();
  }
  if (!r || (!r.ok && r.status !== 401)) {
    setTimeout(() => void checkAccess(), 2000);
    return;
  }
  store.access = !r.ok ? 'needs-token' : (await r.json()).actions ? 'actions' : 'read-only';
  changed();
  if (store.access !== 'needs-token') connect();
}

addEventListener('hashchange', () => {
  if (!/token=/.test(location.hash)) return;
  token = takeToken();
  store.tokenRefused = false;
  void checkAccess();
});

/** @type {EventSource | null} */
let stream = null;

function connect() {
  if (stream) return;
  const es = new EventSource('/api/live');
  stream = es;
  es.addEventListener('delta', (e) => applyDelta(JSON.parse(/** @type {MessageEvent} */ (e).data)));
  es.onopen = () => {
    store.connected = true;
    changed();
  };
  es.onerror = () => {
    store.connected = false; // EventSource reconnects by itself, sending the last id
    changed();
  };
}

/** Re-renders the component on store changes, at most once per animation frame. */
function useStore() {
  const [, tick] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    let queued = false;
    const l = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        tick(0);
      });
    };
    store.listeners.add(l);
    l(); // the store may have changed between the render and this effect (the access check's answer)
    return () => store.listeners.delete(l);
  }, []);
  return store;
}

/** Re-renders every `ms` (clocks, running times). */
function useTicker(ms) {
  const [, tick] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    const t = setInterval(() => tick(0), ms);
    return () => clearInterval(t);
  }, [ms]);
}

/** The current hash route: `#/`, `#/job/<id>`, `#/hosts`, `#/queue`, `#/timeline`. */
function useRoute() {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash.slice(1).split('/').filter(Boolean);
}

async function getJson(/** @type {string} */ url) {
  const r = await fetch(url, { headers: tokenHeader() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error?.message ?? `${url}: HTTP ${r.status}`);
  return body;
}

async function act(/** @type {string} */ jobId, /** @type {string} */ action, body = {}) {
  const r = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/${action}`, { method: 'POST', headers: { 'content-type': 'application/json', ...tokenHeader() }, body: JSON.stringify(body) });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error?.message ?? `${action}: HTTP ${r.status}`);
  return answer.job;
}

// --- formatting ---------------------------------------------------------------------------

function duration(/** @type {number} */ ms) {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
const clock = (/** @type {number} */ at) => new Date(at).toLocaleTimeString();
const mib = (/** @type {number} */ kb) => (kb >= 1024 * 1024 ? `${(kb / 1024 / 1024).toFixed(1)} GiB` : `${(kb / 1024).toFixed(0)} MiB`);
const ENDED = new Set(['done', 'failed', 'cancelled']);

/** A stable colour per job, for the timeline and the slots. */
function jobColour(/** @type {string} */ jobId) {
  let hash = 0;
  for (const c of jobId) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 55%)`;
}

const bytes = (/** @type {number} */ n) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);

// --- federation: jobs sent to a peer, jobs a peer sent us, the links -----------------------------

/** Where an outsourced job stands at the peer, in a few words (the CLI's `outsourceReason`, shorter). */
const THERE = { sent: 'bundle on its way', accepted: 'queued there', rejected: 'refused there', started: 'rendering there', progress: 'rendering there', done: 'done there, frames coming back', failed: 'failed there', cancelled: 'cancelled there' };

/** "outsourced to v1 · 3/8 frames back · rendering there", or "from v1 · their job X": what `renderbus jobs` says of the job's site. */
function SiteCell({ job }) {
  const o = job.outsourced;
  if (o) {
    return html`<span class="fed out" data-outsourced=${o.site}>outsourced to <strong>${o.site}</strong> · <span class="num" data-back=${o.back}>${o.back}/${job.counts.total} frames back</span>${ENDED.has(job.state) ? '' : html` · <small>${THERE[o.state] ?? o.state}${o.counts?.running ? `, ${o.counts.running} rendering` : ''}</small>`}</span>`;
  }
  if (job.origin) return html`<span class="fed in" data-origin=${job.origin.site}>from <strong>${job.origin.site}</strong> · <small>their job ${job.origin.job}</small></span>`;
  return '';
}

/** The job page's line on its site: the peer's state, its job id there, the last news, why it went, the bill. */
function SiteLine({ job }) {
  const o = job.outsourced;
  if (o) {
    const bill = o.bill ? `; bill ${(o.bill.amountMinor / 100).toFixed(2)} ${o.bill.currency} for ${o.bill.frames} frames, ${o.bill.signed ? `signed by ${o.site}` : 'NOT signed'}` : '';
    return html`<p class="site-line" data-site-line="outsourced">outsourced to <strong>${o.site}</strong>: ${THERE[o.state] ?? o.state}${o.remoteJob ? ` (their job ${o.remoteJob})` : ''}, ${o.back}/${job.counts.total} frames back${o.reason ? ` (${o.reason})` : ''}${o.heardAt ? `; last news ${duration(Date.now() - o.heardAt)} ago` : '; nothing heard yet'}${bill}${o.why ? html`<br /><span data-why>${job.placement ? o.why : `sent by the site's policy: ${o.why}`}</span>` : ''}</p>
      ${o.samples?.length ? html`<div class="samples" data-samples>${o.samples.map((x) => html`<figure><img src=${`/api/jobs/${job.jobId}/samples/${x.frame}`} alt=${`sample of frame ${x.frame}`} loading="lazy" /><figcaption>frame ${x.frame}</figcaption></figure>`)}</div>` : ''}`;
  }
  // site: auto (or the overflow policy) kept it here: every quote and why
  if (job.placement) return html`<p class="site-line" data-site-line="placed">${job.placement.text}</p>`;
  if (job.origin) return html`<p class="site-line" data-site-line="origin">from <strong>${job.origin.site}</strong>, their job ${job.origin.job}: rendered here for them, its frames and bill go back to ${job.origin.site}</p>`;
  return null;
}

/** The linked peers (`renderbus sites`): link state, round trip, what waits either way, jobs each way. Only on a site with peers. */
function SitesPanel() {
  const s = useStore();
  const sites = s.sites;
  if (!sites || sites.links.length === 0) return null;
  const jobs = [...s.jobs.values()].filter((j) => !ENDED.has(j.state));
  const backlog = (/** @type {{ bundles: number, bytes: number }} */ b) => (b.bundles === 0 ? '-' : `${b.bundles} bundle${b.bundles === 1 ? '' : 's'}, ${bytes(b.bytes)}`);
  return html`<section class="sites" data-sites>
    <h3>Sites ${sites.answered ? '' : html`<small class="bad">the link service did not answer: as it last said</small>`}</h3>
    <table>
      <thead><tr><th>peer</th><th>link</th><th>since</th><th>round trip</th><th>waiting out</th><th>waiting in</th><th>jobs sent there</th><th>jobs from there</th></tr></thead>
      <tbody>${sites.links.map((l) => html`<tr key=${l.peer} data-peer=${l.peer}>
        <td>${l.peer}</td>
        <td><span class=${`link link-${l.state}`} data-link-state=${l.state} title=${l.reason ?? ''}>${l.state}</span></td>
        <td>${duration(Date.now() - l.since)} ago</td>
        <td class="num" data-rtt>${l.rttMs !== undefined ? `${l.rttMs.toFixed(l.rttMs < 10 ? 1 : 0)} ms` : '-'}</td>
        <td class="num" data-waiting-out>${backlog(l.outgoing)}</td>
        <td class="num" data-waiting-in>${backlog(l.incoming)}</td>
        <td class="num" data-jobs-out>${jobs.filter((j) => j.outsourced?.site === l.peer).length}</td>
        <td class="num" data-jobs-in>${jobs.filter((j) => j.origin?.site === l.peer).length}</td>
      </tr>`)}</tbody>
    </table>
  </section>`;
}

// --- components -----------------------------------------------------------------------------

function StateBadge({ state }) {
  return html`<span class=${`state state-${state}`} data-state=${state}>${state}</span>`;
}

/** A job's counts in words; frames in hand are handed to a slot that has not started them (not running). */
function countsText(/** @type {Job['counts']} */ c) {
  return `${c.done} done, ${c.running} running${c.inHand ? `, ${c.inHand} in hand` : ''}, ${c.failed} failed, ${c.queued} queued of ${c.total}`;
}

function Progress({ counts }) {
  const pct = (/** @type {number} */ n) => (counts.total > 0 ? (100 * n) / counts.total : 0);
  return html`<div class="progress" title=${countsText(counts)}>
    <div class="bar done" style=${{ width: `${pct(counts.done)}%` }}></div>
    <div class="bar running" style=${{ width: `${pct(counts.running)}%` }}></div>
    <div class="bar inhand" style=${{ width: `${pct(counts.inHand ?? 0)}%` }}></div>
    <div class="bar failed" style=${{ width: `${pct(counts.failed)}%` }}></div>
  </div>`;
}

function eta(/** @type {Job & { heardAt: number }} */ j) {
  if (ENDED.has(j.state)) return j.finishedAt && j.startedAt ? `took ${duration(j.finishedAt - j.startedAt)}` : '';
  if (j.etaMs === undefined) return ''; // no frame time measured yet
  return `ETA ${duration(Math.max(0, j.etaMs - (Date.now() - j.heardAt)))}`;
}

function JobsView() {
  const s = useStore();
  useTicker(1000);
  const jobs = [...s.jobs.values()].sort((a, b) => Number(ENDED.has(a.state)) - Number(ENDED.has(b.state)) || b.submittedAt - a.submittedAt);
  if (jobs.length === 0) return html`<${SitesPanel} /><p class="empty">No jobs on site ${s.site}. Submit one: <code>renderbus submit job.json</code></p>`;
  const fed = jobs.some((j) => j.outsourced || j.origin);
  return html`<${SitesPanel} /><table class="jobs">
    <thead><tr><th>job</th><th>name</th><th>user</th><th>project</th><th>prio</th><th>state</th><th>progress</th><th>frames</th>${fed ? html`<th>site</th>` : ''}<th></th></tr></thead>
    <tbody>${jobs.map((j) => html`<tr key=${j.jobId} data-job=${j.jobId}>
      <td><a href=${`#/job/${j.jobId}`}>${j.jobId}</a></td>
      <td>${j.name}</td><td>${j.user}</td><td>${j.project}</td><td>${j.priority}</td>
      <td><${StateBadge} state=${j.state} /></td>
      <td><${Progress} counts=${j.counts} /></td>
      <td class="num" data-done=${j.counts.done}>${j.counts.done}/${j.counts.total}${j.counts.failed > 0 ? html` <span class="bad">${j.counts.failed} failed</span>` : ''}</td>
      ${fed ? html`<td class="site"><${SiteCell} job=${j} /></td>` : ''}
      <td class="why">${eta(j)}${j.outsourced ? (j.outsourced.why && !ENDED.has(j.state) ? html`<span title=${j.waiting ?? ''}>sent by the site's policy: ${j.outsourced.why}</span>` : '') : j.waiting && !ENDED.has(j.state) ? html`<span title=${j.waiting}>${j.waiting}</span>` : ''}</td>
    </tr>`)}</tbody>
  </table>`;
}

function Actions({ job, onDone }) {
  if (store.access !== 'actions') return null; // the banner says how to get the token
  return html`<${ActionButtons} job=${job} onDone=${onDone} />`;
}

function ActionButtons({ job, onDone }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [priority, setPriority] = useState(String(job.priority));
  useEffect(() => setPriority(String(job.priority)), [job.priority]);
  const run = async (/** @type {string} */ action, body = {}) => {
    if (action === 'cancel' && !confirm(`Cancel job ${job.jobId} (${job.name})? Running frames are killed.`)) return;
    setBusy(true);
    setError('');
    try {
      onDone(await act(job.jobId, action, body));
    } catch (e) {
      setError(/** @type {Error} */ (e).message);
    } finally {
      setBusy(false);
    }
  };
  const ended = ENDED.has(job.state);
  const button = (/** @type {string} */ action, /** @type {string} */ label, /** @type {boolean} */ enabled) =>
    html`<button data-action=${action} disabled=${busy || !enabled} onClick=${() => run(action)}>${label}</button>`;
  return html`<div class="actions">
    ${button('pause', 'Pause', !ended && job.state !== 'paused' && !job.outsourced)}
    ${button('resume', 'Resume', job.state === 'paused')}
    ${job.state === 'held' ? button('release', 'Release', true) : ''}
    ${button('retry', 'Retry failed', !job.outsourced && (job.counts.failed > 0 || job.retryable === true))}
    ${button('cancel', 'Cancel', !ended)}
    <form class="priority" onSubmit=${(/** @type {Event} */ e) => { e.preventDefault(); void run('priority', { priority: Number(priority) }); }}>
      <label>priority <input name="priority" type="number" min="0" max="1000" value=${priority} onInput=${(/** @type {any} */ e) => setPriority(e.currentTarget.value)} disabled=${busy || ended} /></label>
      <button data-action="priority" type="submit" disabled=${busy || ended}>Set</button>
    </form>
    ${error ? html`<span class="error" role="alert">${error}</span>` : ''}
  </div>`;
}

function FrameCell({ jobId, f, selected, onPick }) {
  const thumb = f.state === 'done' ? `/api/jobs/${jobId}/frames/${f.frame}/thumbnail?w=160&a=${f.attempt}` : null;
  const state = f.inHand ? 'in hand' : f.state;
  return html`<button class=${`frame frame-${f.state}${f.inHand ? ' frame-inhand' : ''}${selected ? ' selected' : ''}`} data-frame=${f.frame} data-state=${f.state} data-in-hand=${f.inHand ? 'yes' : undefined} title=${`frame ${f.frame}: ${state}${f.host ? ` on ${f.host}/${f.slot}` : ''}${f.error ? ` — ${f.error}` : ''}`} onClick=${() => onPick(f.frame)}>
    ${thumb ? html`<img class="thumb" src=${thumb} alt=${`frame ${f.frame}`} loading="lazy" />` : html`<span class="blank"></span>`}
    <span class="n">${f.frame}</span>
    ${f.percent !== undefined && f.state === 'running' ? html`<span class="pct" style=${{ width: `${f.percent}%` }}></span>` : ''}
  </button>`;
}

function FramePanel({ jobId, frame, onClose }) {
  const [data, setData] = useState(/** @type {any} */ (null));
  const [error, setError] = useState('');
  const logRef = useRef(/** @type {HTMLPreElement | null} */ (null));
  useEffect(() => {
    let stop = false;
    let timer = 0;
    const load = async () => {
      try {
        const d = await getJson(`/api/jobs/${jobId}/frames/${frame}`);
        if (stop) return;
        setData(d);
        setError('');
        if (d.frame.state === 'running' || d.frame.state === 'queued') timer = setTimeout(load, 2000);
      } catch (e) {
        if (!stop) setError(/** @type {Error} */ (e).message);
      }
    };
    void load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [jobId, frame]);
  useEffect(() => {
    if (logRef.current) logRef.current.scrollTop = logRef.current.scrollHeight;
  }, [data?.log]);
  const f = data?.frame;
  const live = data?.live;
  return html`<aside class="panel" data-panel-frame=${frame}>
    <header><h3>frame ${frame}</h3><button class="close" onClick=${onClose} aria-label="close">×</button></header>
    ${error ? html`<p class="error">${error}</p>` : ''}
    ${f ? html`<dl>
      <dt>state</dt><dd>${f.inHand ? html`<span class="state state-inhand" data-state="in hand">in hand</span> <small>its slot holds it, to start when the task it renders ends</small>` : html`<${StateBadge} state=${f.state} />`}</dd>
      <dt>host/slot</dt><dd>${f.host ? `${f.host}/${f.slot}` : '-'}</dd>
      <dt>attempt</dt><dd>${f.attempt}</dd>
      ${f.handedAt ? html`<dt>handed out</dt><dd>${clock(f.handedAt)}</dd>` : ''}
      ${f.startedAt ? html`<dt>started</dt><dd>${clock(f.startedAt)}</dd>` : ''}
      ${f.finishedAt ? html`<dt>finished</dt><dd>${clock(f.finishedAt)}</dd>` : ''}
      ${f.error ? html`<dt>error</dt><dd class="bad">${f.error}</dd>` : ''}
      ${f.stats ? html`<dt>stats</dt><dd class="stats">wall ${duration(f.stats.wallMs)}, cpu ${duration(f.stats.cpuMs)}, peak ${mib(f.stats.peakRssKb)}, written ${(f.stats.bytesWritten / 1024).toFixed(0)} KiB</dd>` : ''}
      ${live ? html`<dt>live</dt><dd class="live">cpu ${live.cpuPercent.toFixed(0)}%, memory ${mib(live.rssKb)} (peak ${mib(live.peakRssKb)}), running ${duration(live.wallMs)}</dd>` : ''}
      ${(f.attempts ?? []).map((/** @type {any} */ a) => html`<dt>attempt ${a.attempt}</dt><dd class="bad attempt" data-attempt=${a.attempt}>failed on ${a.host}/${a.slot}${a.startedAt ? ` at ${clock(a.startedAt)} after ${duration(a.finishedAt - a.startedAt)}` : ` at ${clock(a.finishedAt)}`}: ${a.error}</dd>`)}
    </dl>
    <h4>log ${data.logPath ? html`<small>${data.logPath}</small>` : ''}</h4>
    <pre class="log" ref=${logRef}>${data.log ?? (f.attempt > 0 ? 'no log here (the task printed nothing, or the output directory is not reachable from the monitor)' : 'not started yet')}</pre>` : error ? '' : html`<p>loading…</p>`}
  </aside>`;
}

function JobPage({ jobId }) {
  const s = useStore();
  useTicker(1000);
  const [detail, setDetail] = useState(/** @type {any} */ (null));
  const [error, setError] = useState('');
  const [picked, setPicked] = useState(/** @type {number | null} */ (null));
  /** frame number → record, kept up to date by the stream's frame changes */
  const framesRef = useRef(/** @type {Map<number, any>} */ (new Map()));
  const [, bump] = useReducer((n) => n + 1, 0);

  useEffect(() => {
    let stop = false;
    /** @type {any[]} */
    let early = [];
    let loaded = false;
    const onFrames = (/** @type {any[]} */ changes) => {
      const mine = changes.filter((c) => c.jobId === jobId);
      if (mine.length === 0) return;
      if (!loaded) {
        early.push(...mine); // the detail is on its way: apply them on top of it
        return;
      }
      for (const c of mine) applyFrameChange(framesRef.current, c);
      bump(0);
    };
    store.frameListeners.add(onFrames);
    getJson(`/api/jobs/${jobId}`).then((d) => {
      if (stop) return;
      framesRef.current = new Map(d.frames.map((/** @type {any} */ f) => [f.frame, f]));
      for (const c of early) applyFrameChange(framesRef.current, c);
      early = [];
      loaded = true;
      setDetail(d);
      setError('');
    }, (e) => !stop && setError(e.message));
    return () => {
      stop = true;
      store.frameListeners.delete(onFrames);
    };
  }, [jobId, s.epoch]);

  const live = s.jobs.get(jobId);
  const job = live ?? (detail ? { ...detail, heardAt: Date.now() } : null);
  if (error && !job) return html`<p class="error">${error}</p>`;
  if (!job) return html`<p>loading job ${jobId}…</p>`;
  const frames = [...framesRef.current.values()].sort((a, b) => a.frame - b.frame);
  return html`<section class="job-page" data-job-page=${jobId}>
    <header class="job-head">
      <h2>${job.name} <small>${job.jobId}</small></h2>
      <div class="facts">
        <${StateBadge} state=${job.state} />
        <span>${job.user} · ${job.project} · priority ${job.priority}</span>
        <${Progress} counts=${job.counts} />
        <span class="num">${job.counts.done}/${job.counts.total} done${job.counts.running ? `, ${job.counts.running} running` : ''}${job.counts.inHand ? `, ${job.counts.inHand} in hand` : ''}${job.counts.failed ? `, ${job.counts.failed} failed` : ''}</span>
        <span>${eta(job)}</span>
      </div>
      <${SiteLine} job=${job} />
      ${job.waiting && !ENDED.has(job.state) && !job.outsourced ? html`<p class="why">waiting: ${job.waiting}</p>` : ''}
      <${Actions} job=${job} onDone=${(/** @type {Job} */ j) => { s.jobs.set(j.jobId, { ...j, heardAt: Date.now() }); changed(); }} />
    </header>
    <div class="job-body">
      <div class="grid">${frames.map((f) => html`<${FrameCell} key=${f.frame} jobId=${jobId} f=${f} selected=${picked === f.frame} onPick=${setPicked} />`)}</div>
      ${picked !== null ? html`<${FramePanel} jobId=${jobId} frame=${picked} onClose=${() => setPicked(null)} />` : ''}
    </div>
  </section>`;
}

/** A frame change from the stream, applied to the job page's frames (never back from an end to an older attempt). */
function applyFrameChange(/** @type {Map<number, any>} */ frames, /** @type {any} */ c) {
  const f = frames.get(c.frame);
  if (!f) return;
  if ((f.state === 'done' || f.state === 'failed') && c.state === 'running' && (c.attempt ?? 0) <= f.attempt) return;
  // a dispatched event can arrive after its slot's started one: a started attempt stays started
  const started = f.state === 'running' && f.attempt === c.attempt && (f.inHand === false || (f.inHand === undefined && f.startedAt !== undefined));
  f.state = c.state;
  if (c.host !== undefined) f.host = c.host;
  if (c.slot !== undefined) f.slot = c.slot;
  if (c.attempt !== undefined) f.attempt = c.attempt;
  if (c.error !== undefined) f.error = c.error;
  if (c.output !== undefined) f.output = c.output;
  f.percent = c.state === 'running' ? c.percent ?? f.percent : undefined;
  // handed out (dispatched): in hand until its slot's started event
  if (c.state !== 'running') f.inHand = undefined;
  else if (c.inHand === false || (c.inHand === true && !started)) f.inHand = c.inHand;
}

function Meter({ value, max, label }) {
  const pct = max > 0 ? Math.min(100, (100 * value) / max) : 0;
  return html`<div class="meter" title=${label}><div style=${{ width: `${pct}%` }}></div><span>${label}</span></div>`;
}

function HostsView() {
  const s = useStore();
  const hosts = [...s.hosts.values()].sort((a, b) => Number(b.up) - Number(a.up) || a.host.localeCompare(b.host));
  if (hosts.length === 0) return html`<p class="empty">No render hosts on site ${s.site}. Start one: <code>renderbus render-server</code></p>`;
  return html`<div class="hosts">${hosts.map((host) => html`<section key=${host.host} class=${`host${host.up ? '' : ' down'}${host.sick ? ' sick' : ''}`} data-host=${host.host}>
    <header>
      <h3>${host.host}</h3>
      <span class="tag">${host.up ? 'up' : 'down'}</span>${host.sick ? html`<span class="tag bad" title=${host.sickUntil ? `until ${clock(host.sickUntil)}` : ''}>sick</span>` : ''}
      ${host.load !== undefined ? html`<span class="load">load ${host.load.toFixed(2)}</span>` : ''}
    </header>
    ${host.up ? html`<${Meter} value=${host.cpuPercent} max=${(host.cpus ?? 1) * 100} label=${`cpu ${host.cpuPercent.toFixed(0)}% of ${host.cpus ?? '?'} cores`} />
    <${Meter} value=${host.rssKb / 1024} max=${host.ramMb ?? 0} label=${`memory ${mib(host.rssKb)}${host.ramMb ? ` of ${(host.ramMb / 1024).toFixed(1)} GiB` : ''}`} />` : ''}
    <ul class="slots">${host.slots.map((/** @type {any} */ slot) => html`<li key=${slot.index} class=${`slot slot-${slot.state}`} data-slot=${`${host.host}/${slot.index}`}>
      <span class="idx">${slot.index}</span>
      ${slot.run ? html`<a href=${`#/job/${slot.run.jobId}`} style=${{ borderColor: jobColour(slot.run.jobId) }}>${slot.run.jobId}:${slot.run.frames.join(',')}</a>
        ${slot.run.live ? html`<span class="live">${slot.run.live.cpuPercent.toFixed(0)}% · ${mib(slot.run.live.rssKb)}</span>` : ''}
        <span class="since">${duration(Date.now() - slot.run.startedAt)}</span>` : html`<span class="free">${slot.state === 'idle' ? 'free' : slot.state}</span>`}
    </li>`)}</ul>
  </section>`)}</div>`;
}

function QueueView() {
  const [data, setData] = useState(/** @type {any} */ (null));
  const [error, setError] = useState('');
  useEffect(() => {
    let stop = false;
    let timer = 0;
    const load = async () => {
      try {
        const d = await getJson('/api/queue');
        if (!stop) { setData(d); setError(''); }
      } catch (e) {
        if (!stop) setError(/** @type {Error} */ (e).message);
      }
      if (!stop) timer = setTimeout(load, 3000);
    };
    void load();
    return () => { stop = true; clearTimeout(timer); };
  }, []);
  if (!data) return error ? html`<p class="error">${error}</p>` : html`<p>loading the queue…</p>`;
  return html`<div>
    ${error ? html`<p class="error">${error} (showing the last answer)</p>` : ''}
    ${data.shares && data.shares.shares?.length ? html`<p class="shares">shares: ${data.shares.shares.map((/** @type {any} */ sh) => `${sh.project} ${sh.weight}`).join(', ')}</p>` : ''}
    ${data.jobs.length === 0 ? html`<p class="empty">The queue is empty.</p>` : html`<table class="queue">
      <thead><tr><th>#</th><th>job</th><th>name</th><th>prio</th><th>project</th><th>state</th><th>queued</th><th>running</th><th>done</th><th>why it waits</th></tr></thead>
      <tbody>${data.jobs.map((/** @type {any} */ j) => html`<tr key=${j.jobId} data-job=${j.jobId}>
        <td>${j.position}</td><td><a href=${`#/job/${j.jobId}`}>${j.jobId}</a></td><td>${j.name}</td><td>${j.priority}</td><td>${j.project}</td>
        <td><${StateBadge} state=${j.state} /></td><td class="num">${j.counts.queued}</td><td class="num">${j.counts.running}${j.counts.inHand ? html` <small title="handed to slots that have not started them">+${j.counts.inHand} in hand</small>` : ''}</td><td class="num">${j.counts.done}/${j.counts.total}</td>
        <td class="why">${j.waiting ?? ''}</td>
      </tr>`)}</tbody>
    </table>`}
  </div>`;
}

const WINDOWS = [{ label: '5 min', ms: 5 * 60_000 }, { label: '30 min', ms: 30 * 60_000 }, { label: '2 h', ms: 2 * 3600_000 }];

function TimelineView() {
  const s = useStore();
  useTicker(1000);
  const [windowMs, setWindowMs] = useState(WINDOWS[0].ms);
  const now = Date.now();
  const from = now - windowMs;
  const spans = [...s.spans.values()].filter((sp) => (sp.end ?? now) >= from);
  const rows = useMemo(() => {
    const keys = new Set(spans.map((sp) => `${sp.host}/${sp.slot}`));
    for (const host of s.hosts.values()) if (host.up) for (const slot of host.slots) keys.add(`${host.host}/${slot.index}`);
    return [...keys].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  }, [spans.length, s.hosts.size]);
  const rowH = 18;
  const labelW = 130;
  const width = 1000;
  const x = (/** @type {number} */ t) => labelW + ((Math.max(t, from) - from) / windowMs) * (width - labelW);
  return html`<div class="timeline">
    <div class="windows">${WINDOWS.map((w) => html`<button class=${w.ms === windowMs ? 'on' : ''} onClick=${() => setWindowMs(w.ms)}>${w.label}</button>`)}</div>
    ${rows.length === 0 ? html`<p class="empty">Nothing has run since the monitor started.</p>` : html`<svg viewBox=${`0 0 ${width} ${rows.length * rowH + 20}`} width="100%" role="img" aria-label="frames on slots over time">
      ${rows.map((r, i) => html`<text x="4" y=${i * rowH + 13} class="row-label">${r}</text><line x1=${labelW} x2=${width} y1=${(i + 1) * rowH} y2=${(i + 1) * rowH} class="row-line" />`)}
      ${spans.map((sp) => {
        const i = rows.indexOf(`${sp.host}/${sp.slot}`);
        if (i < 0) return null;
        const x0 = x(sp.start);
        const x1 = Math.max(x0 + 1.5, x(sp.end ?? now));
        return html`<a href=${`#/job/${sp.jobId}`}><rect data-span=${sp.id} x=${x0} y=${i * rowH + 2} width=${x1 - x0} height=${rowH - 4} rx="2" fill=${jobColour(sp.jobId)} class=${`span span-${sp.outcome ?? 'running'}`}>
          <title>${`${sp.jobId} frames ${sp.frames.join(',')} · attempt ${sp.attempt} · ${clock(sp.start)}–${sp.end ? clock(sp.end) : 'now'} (${duration((sp.end ?? now) - sp.start)}) · ${sp.outcome ?? 'running'}`}</title>
        </rect></a>`;
      })}
      <text x=${labelW} y=${rows.length * rowH + 15} class="axis">${clock(from)}</text>
      <text x=${width - 4} y=${rows.length * rowH + 15} class="axis" text-anchor="end">${clock(now)}</text>
    </svg>`}
  </div>`;
}

/** Says what this page may do when it may not do everything, and how to get the token. */
function AccessNotice({ access, refused }) {
  const how = html`Open the link <code>renderbus up</code> printed (it ends in <code>#token=…</code>), or add <code>#token=</code> and the token from <code>${'<data>/monitor-token'}</code> (<code>renderbus monitor</code>: its <code>--token-file</code>) to this page's address.`;
  const wrong = refused ? html`<strong>The token in the link was refused.</strong> ` : '';
  if (access === 'read-only') return html`<p class="notice" data-access="read-only">${wrong}Read-only view: pausing, cancelling and the other actions need the farm's access token. ${how}</p>`;
  if (access === 'needs-token') return html`<p class="notice bad" data-access="needs-token">${wrong}From another machine, this monitor needs the farm's access token. ${how}</p>`;
  return null;
}

function App() {
  const s = useStore();
  const route = useRoute();
  const [view, arg] = route;
  const tab = (/** @type {string} */ href, /** @type {string} */ label, /** @type {boolean} */ on) => html`<a href=${href} class=${on ? 'on' : ''}>${label}</a>`;
  const busy = [...s.hosts.values()].reduce((n, host) => n + host.slots.filter((/** @type {any} */ sl) => sl.state === 'busy').length, 0);
  const slots = [...s.hosts.values()].reduce((n, host) => n + (host.up ? host.slots.length : 0), 0);
  return html`<div class="app">
    <nav>
      <strong>renderbus</strong> <span class="site">${s.site}</span>
      ${tab('#/', 'Jobs', !view || view === 'job')}${tab('#/queue', 'Queue', view === 'queue')}${tab('#/hosts', 'Hosts', view === 'hosts')}${tab('#/timeline', 'Timeline', view === 'timeline')}
      <span class="spacer"></span>
      <span class="slots-count">${busy}/${slots} slots busy</span>
      <span class=${`conn ${s.connected ? 'on' : 'off'}`} data-connected=${String(s.connected)}>${s.connected ? 'live' : 'reconnecting…'}</span>
    </nav>
    <${AccessNotice} access=${s.access} refused=${s.tokenRefused} />
    <main>
      ${s.access === 'needs-token' ? '' : view === 'job' && arg ? html`<${JobPage} key=${arg} jobId=${decodeURIComponent(arg)} />`
        : view === 'hosts' ? html`<${HostsView} />`
        : view === 'queue' ? html`<${QueueView} />`
        : view === 'timeline' ? html`<${TimelineView} />`
        : html`<${JobsView} />`}
    </main>
  </div>`;
}

void checkAccess();
const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(html`<${App} />`, root);
}
