// renderbus demo: a lit, spinning knot of shapes over a checker floor. 36 frames = one turn.
//
// Animation rule of the renderbus POV-Ray adapter: `clock` equals `frame_number` in every
// frame, however the job is split into chunks (the adapter passes +KFI/+KFF/+KI/+KF so).
// Animate on `clock` as a frame number; never on initial_frame/final_frame/final_clock,
// which describe only the chunk a render slot is working on.
#version 3.7;
global_settings { assumed_gamma 1.0 max_trace_level 6 }
// POV-Ray's standard include files (Debian: povray-includes, which bootstrap installs)
#include "colors.inc"

#declare Frames = 36;
#declare Turn = clock / Frames;            // 0..1 over the animation
#declare Angle = 360 * Turn;

camera {
  location <0, 2.8, -7.4>
  look_at <0, 1.15, 0>
  angle 48
}

light_source { <-4, 8, -5> color rgb <1.0, 0.95, 0.9> * 1.1 }
light_source { <5, 3, -2> color rgb <0.35, 0.45, 0.7> shadowless }

sky_sphere {
  pigment { gradient y color_map { [0 color rgb <0.85, 0.88, 0.95>] [1 color rgb <0.25, 0.35, 0.6>] } }
}

plane {
  y, 0
  pigment { checker color Gray90 color Gray10 scale 0.8 }
  finish { diffuse 0.8 reflection 0.12 }
}

#declare Chrome = finish { ambient 0 diffuse 0.25 specular 0.9 roughness 0.01 reflection { 0.35 metallic } };

union {
  torus {
    0.9, 0.22
    rotate x * 90
    pigment { color rgb <0.85, 0.25, 0.15> }
    finish { Chrome }
  }
  sphere { <0, 0, 0>, 0.45 pigment { color rgb <0.95, 0.8, 0.2> } finish { Chrome } }
  #for (I, 0, 5)
    sphere {
      <1.45, 0, 0>, 0.16
      rotate z * (I * 60 + Angle * 2)
      pigment { color rgb <0.2, 0.55 + 0.07 * I, 0.9> }
      finish { Chrome }
    }
  #end
  rotate y * Angle
  rotate x * 12 * sin(2 * pi * Turn)
  translate <0, 1.35 + 0.15 * sin(4 * pi * Turn), 0>
}
