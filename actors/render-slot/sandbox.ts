import { dirname, join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';

/**
 * The I/O wrapper (docs/security.md, "The sandbox"): the argv that runs one renderer invocation
 * inside bubblewrap. Pure; the render slot's runtime supplies what it found on the host.
 *
 * Inside: the system read-only (/usr and the few files of /etc a renderer reads), the job's
 * inputs read-only at their own absolute paths, its work dir writable (its frames, nothing
 * else), a private /tmp and /home, no network and no other namespace shared, no capabilities,
 * the renderer's environment only, a PID namespace of its own (bwrap is its init: a kill of bwrap
 * ends the whole tree) and death with its parent. Measured here: +5–7 ms a start, under 1 % of a
 * POV-Ray frame (notes/federation.md §3.5).
 */
export interface SandboxPlan {
  /** bwrap's path. */
  bwrap: string;
  /**
   * When the render server is root: the unprivileged user the renderer runs as. bwrap then runs as
   * root without a user namespace (so that it can bind sources in folders only root may enter) and
   * setpriv inside drops to this uid/gid with every capability gone; the renderer is that user
   * outside the sandbox too, not root in disguise. Absent: bwrap makes a user namespace and the
   * renderer is the render server's own (unprivileged) user.
   */
  runAs?: { uid: number; gid: number; setpriv: string };
  /** Read-only binds: host path → path inside (inputs at their original paths). */
  inputs: { from: string; to: string }[];
  /** The one writable place: the task's work dir, at its own path. */
  workDir: string;
  /** The renderer's extra read-only paths outside /usr (its configuration in /etc), bound when present. */
  extra: readonly string[];
  /** Kernel limits on the renderer (prlimit inside the sandbox): a backstop under the slot's own watch. */
  limits?: SandboxLimits;
}

export interface SandboxLimits {
  /** RLIMIT_AS: the address space of each process, in bytes. */
  addressSpaceBytes?: number;
  /** RLIMIT_CPU: CPU seconds of each process (the kernel sends SIGXCPU, then SIGKILL). */
  cpuSeconds?: number;
}

/**
 * The kernel limits for a task (pure): its address space at 4× the memory it was given (the
 * slot's /proc watch stops it at 1× resident, RB_OUT_OF_MEMORY; address space runs well above
 * resident: thread stacks, mapped files), and its CPU time at its time limit × the host's cores,
 * with a fifth to spare (the slot's timer stops it first, RB_TIMEOUT). Neither without its figure.
 */
export function sandboxLimits(o: { memoryLimitMb?: number; timeLimitMs?: number; cpus: number }): SandboxLimits | undefined {
  const limits: SandboxLimits = {
    ...(o.memoryLimitMb !== undefined ? { addressSpaceBytes: o.memoryLimitMb * 4 * 1024 * 1024 } : {}),
    ...(o.timeLimitMs !== undefined ? { cpuSeconds: Math.ceil((o.timeLimitMs / 1000) * Math.max(1, o.cpus) * 1.2) } : {}),
  };
  return Object.keys(limits).length > 0 ? limits : undefined;
}

/** What of /etc a renderer reads: the dynamic linker's cache, alternatives (Debian's program links), fonts. */
export const SYSTEM_ETC = ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives', '/etc/fonts', '/etc/localtime'] as const;

/**
 * Paths an input may not be bound onto: they would shadow the system the sandbox is built from.
 * /tmp and /home are private tmpfs inside, and binds beneath them land on those (a project in
 * /home/artist is shown there, the rest of /home is not).
 */
const SYSTEM = /^\/(usr|etc|proc|sys|dev|bin|sbin|lib|lib32|lib64|libx32|run)(\/|$)/;

/** The argv of `argv` run in `cwd` with `env` inside the sandbox. Throws RB_BAD_JOB for an input bound onto the system. */
export function sandboxArgv(plan: SandboxPlan, argv: readonly string[], cwd: string, env: Readonly<Record<string, string>>): string[] {
  for (const b of plan.inputs) {
    if (!b.to.startsWith('/') || b.to.split('/').includes('..') || SYSTEM.test(b.to) || b.to === '/') {
      throw new FarmError('RB_BAD_JOB', `input path ${b.to} cannot be shown in the sandbox: it is not absolute or lies in a system folder`);
    }
  }
  const out: string[] = [plan.bwrap];
  // every namespace of its own (no network: only a loopback of its own); as root, all but the user
  // namespace, whose root could not become the unprivileged user (setpriv below)
  if (plan.runAs) out.push('--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try');
  else out.push('--unshare-all', '--cap-drop', 'ALL');
  out.push(
    '--die-with-parent', '--new-session', '--clearenv',
    '--ro-bind', '/usr', '/usr',
    // Debian's merged /usr: /bin, /lib... are links into it
    '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/sbin', '/sbin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64',
  );
  // bwrap makes the folders it needs for a bind 0700: the unprivileged renderer could not pass them
  out.push('--perms', '0755', '--dir', '/etc');
  for (const p of SYSTEM_ETC) out.push('--ro-bind-try', p, p);
  out.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/home');
  const targets = [...plan.inputs.map((b) => b.to), plan.workDir, ...plan.extra];
  for (const dir of mountPoints(targets, plan.inputs.map((b) => b.to))) out.push('--perms', '0755', '--dir', dir);
  for (const p of plan.extra) out.push('--ro-bind-try', p, p);
  // parents before children, so that a bind inside another lands on top of it
  for (const b of [...plan.inputs].sort((a, c) => a.to.length - c.to.length)) out.push('--ro-bind', b.from, b.to);
  out.push('--bind', plan.workDir, plan.workDir);
  for (const [name, value] of Object.entries(env)) {
    // HOME and TMPDIR of the render server's host mean nothing inside
    if (name === 'HOME' || name === 'TMPDIR') continue;
    out.push('--setenv', name, value);
  }
  out.push('--setenv', 'HOME', '/home', '--setenv', 'TMPDIR', '/tmp', '--chdir', cwd, '--');
  if (plan.runAs) {
    out.push(plan.runAs.setpriv, `--reuid=${plan.runAs.uid}`, `--regid=${plan.runAs.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--');
  }
  if (plan.limits) {
    const l = plan.limits;
    out.push('/usr/bin/prlimit', ...(l.addressSpaceBytes !== undefined ? [`--as=${l.addressSpaceBytes}`] : []), ...(l.cpuSeconds !== undefined ? [`--cpu=${l.cpuSeconds}`] : []), '--');
  }
  out.push(...argv);
  return out;
}

/**
 * The folders above the bind targets that the sandbox must make (shortest first): not `/`, not
 * /etc (made first), /tmp or /home (tmpfs), and none inside a bound input, whose own folders
 * show through the bind.
 */
function mountPoints(targets: readonly string[], bound: readonly string[]): string[] {
  const inside = (p: string, d: string) => p === d || p.startsWith(`${d}/`);
  const dirs = new Set<string>();
  for (const t of targets) {
    const parts = t.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) dirs.add(`/${parts.slice(0, i).join('/')}`);
  }
  return [...dirs]
    .filter((d) => d !== '/tmp' && d !== '/home' && d !== '/etc' && !bound.some((b) => inside(d, b)))
    .sort((a, b) => a.length - b.length);
}

/**
 * The read-only binds of a job's inputs. A local job: the folders of its scene and support files
 * at their own paths (a folder inside another taken once). A peer's job (`root`, its tree of
 * hard links, sites/remote-jobs/path-map.ts): each top-level folder of the tree at `/<name>`, so
 * every file is at its original absolute path. Pure: `tops` are the names in `root`.
 */
export function inputBinds(o: { root?: string; tops?: readonly string[]; files: readonly string[] }): { from: string; to: string }[] {
  if (o.root !== undefined) return (o.tops ?? []).map((name) => ({ from: join(o.root!, name), to: `/${name}` }));
  const dirs = [...new Set(o.files.map((f) => dirname(f)))].sort();
  const kept = dirs.filter((d, i) => !dirs.slice(0, i).some((p) => d === p || d.startsWith(`${p}/`)));
  return kept.map((d) => ({ from: d, to: d }));
}
