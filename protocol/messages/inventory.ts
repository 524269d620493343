import { Type, type Static } from '@sinclair/typebox';
import { Millis, Token } from './common.ts';

/** A rendering package found on a host (or offered by configuration). */
export const PackageInfo = Type.Object({
  name: Type.String({ minLength: 1 }),
  version: Type.String({ minLength: 1 }),
  family: Type.Optional(Type.String()),
  path: Type.Optional(Type.String()),
  /** Where the renderer looks for `#include` files, in order (POV-Ray: the Library_Path of its povray.ini). */
  includePath: Type.Optional(Type.Array(Type.String())),
  /** The directory holding the renderer's standard include files (POV-Ray: colors.inc); absent when none of includePath does. */
  includes: Type.Optional(Type.String()),
  /** Render engines it can render with here (Blender: `CYCLES`, `BLENDER_EEVEE`…; the GPU ones only where a GL context can be made). Absent: not probed, any. */
  engines: Type.Optional(Type.Array(Type.String())),
  /** Add-ons: those enabled when it renders and those installed beyond the ones it ships (Blender: the factory set, `--factory-startup`, is what renders use). */
  addons: Type.Optional(Type.Array(Type.Object({ name: Type.String({ minLength: 1 }), enabled: Type.Boolean() }))),
});
export type PackageInfo = Static<typeof PackageInfo>;

/** What a render server probed about its own host (DESIGN §1.4). */
export const HostInventory = Type.Object({
  machine: Type.Object({ family: Type.String(), type: Type.String() }),
  os: Type.Object({
    family: Type.String(),
    type: Type.String(),
    version: Type.String(),
    distro: Type.Optional(Type.String()),
  }),
  cpu: Type.Object({
    count: Type.Integer({ minimum: 1 }),
    family: Type.String(),
    type: Type.String(),
    speedMhz: Type.Number({ minimum: 0 }),
  }),
  ramMb: Type.Integer({ minimum: 0 }),
  swapMb: Type.Integer({ minimum: 0 }),
  packages: Type.Array(PackageInfo),
  licenses: Type.Array(Type.String()),
});
export type HostInventory = Static<typeof HostInventory>;

export const SlotState = { Idle: 'idle', Busy: 'busy', Draining: 'draining' } as const;
export type SlotState = (typeof SlotState)[keyof typeof SlotState];

/** One render slot as its render server reports it. */
export const SlotInfo = Type.Object({
  index: Type.Integer({ minimum: 0 }),
  state: Type.Union([Type.Literal('idle'), Type.Literal('busy'), Type.Literal('draining')]),
  taskId: Type.Optional(Type.String()),
  jobId: Type.Optional(Token),
  frames: Type.Optional(Type.Array(Type.Integer())),
  since: Type.Optional(Millis),
});
export type SlotInfo = Static<typeof SlotInfo>;
