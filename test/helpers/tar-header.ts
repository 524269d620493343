// Tar headers written by hand, for the hostile-bundle tests: what tar-stream's pack will not write.

/** A ustar header by hand, for what tar-stream's pack will not write (a NUL in a name, base-256 sizes). */
export function rawHeader(name: Buffer, size: number, typeflag = '0'): Buffer {
  const h = Buffer.alloc(512);
  name.copy(h, 0, 0, 100);
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  if (size < 8 ** 11) h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  else { h[124] = 0x80; let n = size; for (let i = 135; i > 124; i--) { h[i] = n % 256; n = Math.floor(n / 256); } }
  h.write('00000000000\0', 136, 'latin1');
  h.write(typeflag, 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}
