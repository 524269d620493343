import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

/**
 * A studio's POV-Ray project in `<dir>/proj`: a scene that #includes `parts.inc`, which maps the
 * PNG texture `tex.png` onto a ball rolling with the clock; the include and the texture are the
 * job's support files.
 */
export async function writePovProject(dir: string): Promise<{ proj: string; scene: string; inc: string; tex: string }> {
  const proj = join(dir, 'proj');
  await mkdir(proj, { recursive: true });
  const tex = join(proj, 'tex.png');
  await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 40, b: 40 } } }).composite([{ input: { create: { width: 8, height: 8, channels: 3, background: { r: 20, g: 20, b: 220 } } }, left: 0, top: 0 }]).png().toFile(tex);
  const inc = join(proj, 'parts.inc');
  await writeFile(inc, '#declare Ball = sphere { <0, 0.5, 0>, 0.5 pigment { image_map { png "tex.png" } } }\n');
  const scene = join(proj, 'shot.pov');
  await writeFile(scene, [
    '#include "parts.inc"',
    'camera { location <0, 1, -4> look_at <0, 0.5, 0> }',
    'light_source { <4, 6, -6> color rgb 1 }',
    'plane { y, 0 pigment { checker color rgb 1 color rgb 0.2 } }',
    'object { Ball translate <-1 + clock * 0.2, 0, 0> }',
  ].join('\n'));
  return { proj, scene, inc, tex };
}
