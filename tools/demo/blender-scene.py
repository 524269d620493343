# A small Blender scene made by Blender's own Python (no binary file kept in the repository):
# a sphere moving over a plane whose material reads a checker texture by a `//` relative path.
#
#   blender -b --factory-startup --python tools/demo/blender-scene.py -- OUT.blend \
#       [--frames 6] [--size 160x120] [--samples 4] [--rig]
#
# Writes OUT.blend and, beside it, tex/checker.png (the texture the scene reads). --rig adds a text
# block registered to run when the scene loads, which raises: a scene whose own script is broken.
# Cycles, denoising off (Debian's Blender has no OpenImageDenoise), a fixed seed.
import os
import sys

import bpy

args = sys.argv[sys.argv.index('--') + 1:]
out = os.path.abspath(args[0])


def opt(name, default):
    return args[args.index(name) + 1] if name in args else default


frames = int(opt('--frames', '6'))
width, height = (int(v) for v in opt('--size', '160x120').split('x'))
samples = int(opt('--samples', '4'))

bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.samples = samples
s.cycles.use_denoising = False
s.cycles.seed = 7
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = width, height, 100
s.frame_start, s.frame_end = 1, frames

# the texture: a 16×16 checker saved beside the scene, read back by a relative path
tex_dir = os.path.join(os.path.dirname(out), 'tex')
os.makedirs(tex_dir, exist_ok=True)
checker = bpy.data.images.new('checker', 16, 16)
checker.pixels = [c for y in range(16) for x in range(16) for c in ((0.9, 0.15, 0.15, 1) if ((x >> 2) + (y >> 2)) % 2 == 0 else (0.1, 0.1, 0.8, 1))]
checker.filepath_raw = os.path.join(tex_dir, 'checker.png')
checker.file_format = 'PNG'
checker.save()
bpy.data.images.remove(checker)

bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.object
mat = bpy.data.materials.new('checker')
mat.use_nodes = True
nodes = mat.node_tree.nodes
img = nodes.new('ShaderNodeTexImage')
img.image = bpy.data.images.load(os.path.join(tex_dir, 'checker.png'))
mat.node_tree.links.new(img.outputs['Color'], nodes['Principled BSDF'].inputs['Base Color'])
plane.data.materials.append(mat)

bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5)
ball = bpy.context.object
ball.location = (-1.2, 0, 0.5)
ball.keyframe_insert('location', frame=1)
ball.location = (1.2, 0, 0.5)
ball.keyframe_insert('location', frame=frames)

bpy.ops.object.camera_add(location=(0, -5, 3), rotation=(1.1, 0, 0))
s.camera = bpy.context.object
bpy.ops.object.light_add(type='SUN', location=(0, 0, 5))

if '--rig' in args:
    t = bpy.data.texts.new('rig.py')
    t.write("raise ValueError('the rig script is broken')\n")
    t.use_module = True

# relative_remap: the texture is saved as //tex/checker.png
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=True)
