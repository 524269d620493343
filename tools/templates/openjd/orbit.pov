// A small animation for the OpenJD samples: a sphere that moves with the clock (the frame number).
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { checker color rgb 1 color rgb 0.2 } }
sphere { <-1.5 + clock * 0.1, 0.5, 0>, 0.5 pigment { color rgb <1, 0.3, 0.2> } }
