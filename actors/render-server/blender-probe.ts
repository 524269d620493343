import type { PackageInfo } from '../../protocol/index.ts';

/**
 * What a host's Blender can render with, asked once per program file (version-cache.ts): one
 * `blender -b --factory-startup --python-expr BLENDER_PROBE_PY` (1–3 s: it loads all of itself)
 * prints a line with its version, engines and add-ons, then tries a GL context.
 *
 * - Engines: Eevee, Workbench and every registered `RenderEngine` (Cycles, an add-on's), each kept
 *   when `scene.render.engine` takes it. Debian's 3.4.1 takes all three whether or not it can
 *   draw: Eevee and Workbench need a GL context, which a render without a display makes through
 *   EGL (here: Mesa's surfaceless EGL, llvmpipe, no GPU needed). So the probe renders 1×1 with
 *   Workbench; a Blender that cannot make a context aborts there (`Couldn't find current GLX or
 *   EGL context`), and the host then offers Cycles alone.
 * - Add-ons: those enabled under `--factory-startup` (what renders run with) and those installed
 *   beyond the ones Blender ships (a studio's own, not enabled in renders).
 */

/** The Python the probe runs; its lines start `renderbus-probe: `. */
export const BLENDER_PROBE_PY = [
  'import bpy, addon_utils, json, os',
  'r = bpy.context.scene.render',
  "names = ['BLENDER_EEVEE', 'BLENDER_WORKBENCH'] + sorted({c.bl_idname for c in bpy.types.RenderEngine.__subclasses__()})",
  'engines = []',
  'for n in names:',
  '    try:',
  '        r.engine = n',
  '        engines.append(n)',
  '    except Exception:',
  '        pass',
  "ships = os.path.realpath(bpy.utils.system_resource('SCRIPTS')) + os.sep",
  'addons = []',
  'for m in addon_utils.modules():',
  '    on = bool(addon_utils.check(m.__name__)[1])',
  '    if on or not os.path.realpath(m.__file__).startswith(ships): addons.append({"name": m.__name__, "enabled": on})',
  // the version too: Blender's own banner is lost in its stdio buffer when it aborts below
  "print('renderbus-probe: ' + json.dumps({'version': bpy.app.version_string, 'engines': engines, 'addons': addons}), flush=True)",
  // Eevee and Workbench draw through GL: a 1×1 Workbench render of an empty scene makes a context or dies trying
  "for o in list(bpy.data.objects):",
  "    if o.type != 'CAMERA': bpy.data.objects.remove(o)",
  "r.engine = 'BLENDER_WORKBENCH'",
  'r.resolution_x = r.resolution_y = 1',
  'r.resolution_percentage = 100',
  'bpy.ops.render.render()',
  "print('renderbus-probe: gl', flush=True)",
].join('\n');

/** The engines that draw through GL: offered only where the probe made a GL context. */
export const GL_ENGINES: readonly string[] = ['BLENDER_EEVEE', 'BLENDER_WORKBENCH'];

/** What a Blender said of itself, as kept in the cache. */
export interface BlenderAnswer {
  version: string;
  engines?: string[];
  addons?: { name: string; enabled: boolean }[];
}

const PREFIX = 'renderbus-probe: ';

/**
 * Blender's output read: its version (or undefined: no Blender), its engines and add-ons when
 * its Python answered, the GL ones only when it made a context. `ended`: the process ended on
 * its own (not killed at the time limit); only then is the answer whole, and worth keeping.
 */
export function parseBlenderProbe(out: string, ended: boolean): { answer: BlenderAnswer | undefined; whole: boolean } {
  const lines = out.split(/\r?\n/).filter((l) => l.startsWith(PREFIX)).map((l) => l.slice(PREFIX.length));
  const said = lines.find((l) => l.startsWith('{'));
  let body: unknown;
  try {
    body = said !== undefined ? JSON.parse(said) : undefined;
  } catch {
    body = undefined;
  }
  const told = (body as { version?: unknown } | undefined)?.version;
  const version = /^\d+(?:\.\d+)+/.exec(typeof told === 'string' ? told : '')?.[0] ?? /Blender\s+(\d+(?:\.\d+)+)/.exec(out)?.[1];
  if (version === undefined) return { answer: undefined, whole: false };
  if (!isProbeBody(body)) return { answer: { version }, whole: ended };
  const gl = lines.includes('gl');
  const engines = body.engines.filter((e) => gl || !GL_ENGINES.includes(e));
  return { answer: { version, engines, addons: body.addons }, whole: ended || gl };
}

function isProbeBody(v: unknown): v is Required<Omit<BlenderAnswer, 'version'>> {
  if (v === null || typeof v !== 'object') return false;
  const { engines, addons } = v as Record<string, unknown>;
  return Array.isArray(engines) && engines.every((e) => typeof e === 'string' && e !== '')
    && Array.isArray(addons) && addons.every((a) => a !== null && typeof a === 'object' && typeof (a as { name?: unknown }).name === 'string' && (a as { name: string }).name !== '' && typeof (a as { enabled?: unknown }).enabled === 'boolean');
}

/** The package record of an answer: engines and add-ons only when Blender told them. */
export function blenderPackage(path: string, a: BlenderAnswer): PackageInfo {
  return {
    name: 'blender',
    version: a.version,
    path,
    ...(a.engines ? { engines: a.engines } : {}),
    ...(a.addons ? { addons: a.addons.map((x) => ({ name: x.name, enabled: x.enabled })) } : {}),
  };
}

export function isBlenderAnswer(v: unknown): v is BlenderAnswer {
  if (v === null || typeof v !== 'object') return false;
  const a = v as Record<string, unknown>;
  return typeof a.version === 'string' && a.version !== '' && (a.engines === undefined || isProbeBody({ engines: a.engines, addons: a.addons ?? [] }));
}
