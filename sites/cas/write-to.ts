import type { FileHandle } from 'node:fs/promises';

/** The end of a pipeline that writes into an open file and leaves it open (for the fsync after). */
export function writeTo(fh: FileHandle): (source: AsyncIterable<Uint8Array>) => Promise<void> {
  return async (source) => {
    for await (const chunk of source) {
      let off = 0;
      while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
    }
  };
}
