import { FarmError, RENDERERS } from '../../../protocol/index.ts';
import { createBlenderAdapter } from './blender.ts';
import { createCommandAdapter } from './command.ts';
import { createPovrayAdapter } from './povray.ts';
import type { RenderAdapter } from './types.ts';

export * from './types.ts';
export { createPovrayAdapter, povrayFormat, povrayWorkFile, PovrayParser, type PovrayOptions } from './povray.ts';
export {
  povrayLibrary, parseLibraryPath, includeFileName, standardIncludeMissing, POVRAY_STANDARD_INCLUDES, POVRAY_MARKER_INCLUDE,
  type PovrayLibrary, type LibraryOptions,
} from './povray-library.ts';
export { createBlenderAdapter, blenderFormat, blenderPercent, blenderPrelude, blenderWorkFile, BlenderParser, type BlenderAdapterOptions } from './blender.ts';
export { createCommandAdapter, parseTemplate, CommandParser, type CommandTemplate } from './command.ts';
export { LineSplitter, LineTail, StreamLines } from './lines.ts';

export interface AdapterOptions {
  /** The POV-Ray executable (default `povray` on PATH). */
  povrayBin?: string;
  /** POV-Ray's include path (tests); read from its povray.ini by default. */
  povrayLibraryPath?: readonly string[];
  /** The Blender executable (default `blender` on PATH). */
  blenderBin?: string;
}

/** The adapters of one render host, by renderer name. */
export function createAdapters(o: AdapterOptions = {}): (renderer: string) => RenderAdapter {
  const table: Record<string, RenderAdapter> = {
    povray: createPovrayAdapter({ bin: o.povrayBin, ...(o.povrayLibraryPath ? { libraryPath: o.povrayLibraryPath } : {}) }),
    blender: createBlenderAdapter({ ...(o.blenderBin !== undefined ? { bin: o.blenderBin } : {}) }),
    command: createCommandAdapter(),
  };
  return (renderer) => {
    const a = Object.hasOwn(table, renderer) ? table[renderer] : undefined;
    if (!a) throw new FarmError('RB_BAD_JOB', `renderer '${renderer}' is unknown; this render server drives ${RENDERERS.join(', ')}`);
    return a;
  };
}
