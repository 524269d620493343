import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir, readFile } from 'node:fs/promises';
import { arch, cpus, endianness, platform, release, type } from 'node:os';
import { delimiter, join } from 'node:path';
import type { HostInventory, PackageInfo } from '../../protocol/index.ts';
import { povrayLibrary, rendererEnv } from '../render-slot/index.ts';
import { BLENDER_PROBE_PY, blenderPackage, isBlenderAnswer, parseBlenderProbe } from './blender-probe.ts';
import { cachedAnswer, cachedVersion } from './version-cache.ts';

export interface ProbeOptions {
  /** Replaces the probed rendering packages (configuration or tests). */
  packages?: PackageInfo[];
  /** Named licenses this host holds. */
  licenses?: string[];
  /** Longest a `--version` call may take before the package counts as missing (default 3000 ms). */
  versionTimeoutMs?: number;
  /** Longest Blender's probe may take (default 20 s; once per program file: version-cache.ts). */
  blenderTimeoutMs?: number;
  /** Where /proc, /sys and /etc are (tests). */
  root?: string;
}

const ARCH: Record<string, string> = {
  x64: 'x86_64',
  ia32: 'i686',
  arm64: 'aarch64',
  arm: 'arm',
  ppc64: endianness() === 'LE' ? 'ppc64le' : 'ppc64',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips: 'mips',
  mipsel: 'mipsel',
  loong64: 'loongarch64',
};

/** Packages the render server reads the version of from `--version`: binary, and how. Blender says more: blender-probe.ts. */
const KNOWN_PACKAGES: { name: string; bin: string; version: RegExp }[] = [
  { name: 'povray', bin: 'povray', version: /POV-Ray\s+(\d+(?:\.\d+)+)/ },
];

/** What this host is (DESIGN §1.4): machine, OS, CPU, memory, rendering packages, licenses. */
export async function probeHost(o: ProbeOptions = {}): Promise<HostInventory> {
  const root = o.root ?? '/';
  const text = (path: string) => readFile(join(root, path), 'utf8').catch(() => '');
  const [product, osRelease, cpuinfo, meminfo, packages] = await Promise.all([
    text('sys/class/dmi/id/product_name'),
    text('etc/os-release'),
    text('proc/cpuinfo'),
    text('proc/meminfo'),
    o.packages ? Promise.resolve(o.packages) : probePackages(o.versionTimeoutMs ?? 3_000, o.blenderTimeoutMs ?? 20_000),
  ]);
  const a = arch();
  const cores = cpus();
  const cpu = parseCpuinfo(cpuinfo, a);
  const mem = parseMeminfo(meminfo);
  const distro = parseOsRelease(osRelease);
  return {
    machine: { family: ARCH[a] ?? a, type: product.trim().toLowerCase() || 'generic' },
    os: {
      family: platform() === 'win32' ? 'windows' : 'unix',
      type: type().toLowerCase(),
      version: kernelVersion(release()),
      ...(distro ? { distro } : {}),
    },
    cpu: {
      count: Math.max(1, cores.length),
      family: cpu.family,
      type: cpu.type ?? cores[0]?.model.trim() ?? 'unknown',
      speedMhz: Math.round(cpu.mhz ?? cores[0]?.speed ?? 0),
    },
    ramMb: mem.ramMb,
    swapMb: mem.swapMb,
    packages,
    licenses: [...(o.licenses ?? [])],
  };
}

/** `6.1.0-18-amd64` → `6.1.0`. */
export function kernelVersion(rel: string): string {
  return /^\d+(?:\.\d+)*/.exec(rel)?.[0] ?? rel;
}

/** `/etc/os-release` → `debian@12` (ID@VERSION_ID), or null. */
export function parseOsRelease(text: string): string | null {
  const field = (k: string) => {
    const m = new RegExp(`^${k}=(.*)$`, 'm').exec(text);
    return m ? m[1]!.trim().replace(/^["']|["']$/g, '') : '';
  };
  const id = field('ID');
  if (!id) return null;
  const ver = field('VERSION_ID');
  return ver ? `${id}@${ver}` : id;
}

export function parseCpuinfo(text: string, nodeArch: string): { family: string; type: string | null; mhz: number | null } {
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'mi').exec(text)?.[1]?.trim() || null;
  const vendor = field('vendor_id');
  const family =
    vendor === 'GenuineIntel' ? 'intel'
    : vendor === 'AuthenticAMD' ? 'amd'
    : vendor ? vendor.toLowerCase()
    : (field('CPU implementer') !== null || nodeArch.startsWith('arm')) ? 'arm'
    : nodeArch;
  const mhz = field('cpu MHz');
  return { family, type: field('model name') ?? field('Model') ?? field('cpu'), mhz: mhz ? Number(mhz) : null };
}

export function parseMeminfo(text: string): { ramMb: number; swapMb: number } {
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { ramMb: Math.floor(kb('MemTotal') / 1024), swapMb: Math.floor(kb('SwapTotal') / 1024) };
}

async function probePackages(timeoutMs: number, blenderTimeoutMs: number): Promise<PackageInfo[]> {
  const found = await Promise.all([...KNOWN_PACKAGES.map((p) => probePackage(p.name, p.bin, p.version, timeoutMs)), probeBlender(blenderTimeoutMs)]);
  return found.filter((p): p is PackageInfo => p !== null).map((p) => (p.name === 'povray' ? { ...p, ...povrayIncludes() } : p));
}

/**
 * Blender on PATH (`bin`), its version, engines and add-ons (blender-probe.ts), asked once per
 * program file and GL set-up (glFingerprint), run in the environment its renders get
 * (renderer-env.ts). Null when it is missing or says no version.
 */
export async function probeBlender(timeoutMs: number, o: { bin?: string; cacheFile?: string } = {}): Promise<PackageInfo | null> {
  const path = await which(o.bin ?? 'blender');
  if (!path) return null;
  const answer = await cachedAnswer(path, async () => {
    const { out, killed } = await new Promise<{ out: string; killed: boolean }>((resolve) => {
      const args = ['-b', '--factory-startup', '--python-expr', BLENDER_PROBE_PY];
      execFile(path, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024, env: rendererEnv(undefined) }, (err, stdout, stderr) => {
        resolve({ out: `${stdout}\n${stderr}`, killed: (err as { killed?: boolean } | null)?.killed === true });
      });
    });
    const { answer, whole } = parseBlenderProbe(out, !killed);
    return answer ? { value: answer, keep: whole } : undefined;
  }, { salt: await glFingerprint(), valid: isBlenderAnswer, ...(o.cacheFile !== undefined ? { file: o.cacheFile } : {}) });
  return answer ? blenderPackage(path, answer) : null;
}

/** What decides whether a GL context can be made here: GPU devices and EGL vendors. A change asks Blender again. */
async function glFingerprint(): Promise<string> {
  const names = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort().join(',');
  return `gl:${await names('/dev/dri')};${await names('/usr/share/glvnd/egl_vendor.d')}`;
}

/**
 * POV-Ray's include path as its renderers will see it (their HOME is the render server's:
 * renderer-env.ts), and where its standard includes are. Without them any ordinary scene
 * (`#include "colors.inc"`) fails; the render server warns at start.
 */
export function povrayIncludes(o: { home?: string; root?: string } = {}): Pick<PackageInfo, 'includePath' | 'includes'> {
  const lib = povrayLibrary({ home: o.home ?? rendererEnv(undefined).HOME, ...(o.root !== undefined ? { root: o.root } : {}) });
  return { includePath: lib.dirs, ...(lib.includes !== null ? { includes: lib.includes } : {}) };
}

/** A package on PATH and its version, or null when it is missing, hangs or says no version. */
export async function probePackage(name: string, bin: string, version: RegExp, timeoutMs: number): Promise<PackageInfo | null> {
  const path = await which(bin);
  if (!path) return null;
  const v = await cachedVersion(path, async () => {
    const out = await new Promise<string>((resolve) => {
      execFile(path, ['--version'], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 }, (_err, stdout, stderr) => {
        resolve(`${stdout}\n${stderr}`); // POV-Ray prints its version on stderr
      });
    });
    return version.exec(out)?.[1];
  });
  return v ? { name, version: v, path } : null;
}

async function which(bin: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, bin);
    if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
  }
  return null;
}
