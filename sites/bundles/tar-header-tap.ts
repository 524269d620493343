import { Transform, type TransformCallback } from 'node:stream';

/** What the raw 512-byte header of one tar entry said, before tar-stream's decoding. */
export interface RawHeader {
  /** Where the entry's data starts: tar-stream's `header.byteOffset` for the same entry. */
  dataOffset: number;
  /** Bytes of the name field up to the first NUL, as latin1. */
  name: string;
  /** The name field holds a NUL followed by more name (tar-stream cuts the name at it silently). */
  nulInName: boolean;
  /** The ustar prefix field is not empty (the real name would be prefix/name). */
  prefix: boolean;
  typeflag: string;
  /** An extended header (pax `x`/`g`, GNU long name `L`/`K`) came right before this one. */
  extendedBy: string | null;
}

const EXTENDED = new Set(['x', 'g', 'L', 'K']);

/**
 * Passes a tar stream through unchanged and notes each raw header, so the reader can see what
 * tar-stream hides: a NUL inside a name, a ustar prefix, a pax or GNU header that renamed the
 * entry. It follows header positions by the raw size field; past an extended header its count
 * may differ from tar-stream's, but the reader refuses the entry such a header precedes.
 */
export class TarHeaderTap extends Transform {
  private pos = 0;
  private next = 0;
  private head: Buffer[] = [];
  private headLen = 0;
  private extended: string | null = null;
  private readonly seen = new Map<number, RawHeader>();

  /** The raw header of the entry whose data starts at `dataOffset`, once. */
  headerAt(dataOffset: number): RawHeader | undefined {
    const h = this.seen.get(dataOffset);
    this.seen.delete(dataOffset);
    return h;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.pos < this.next) {
        const skip = Math.min(this.next - this.pos, chunk.length - at);
        at += skip;
        this.pos += skip;
        continue;
      }
      const take = Math.min(512 - this.headLen, chunk.length - at);
      this.head.push(chunk.subarray(at, at + take));
      this.headLen += take;
      at += take;
      this.pos += take;
      if (this.headLen === 512) {
        this.header(Buffer.concat(this.head));
        this.head = [];
        this.headLen = 0;
      }
    }
    done(null, chunk);
  }

  private header(b: Buffer): void {
    const dataOffset = this.pos;
    if (b.every((x) => x === 0)) {
      this.next = dataOffset;
      return;
    }
    const nameField = b.subarray(0, 100);
    const nul = nameField.indexOf(0);
    const typeflag = b[156] === 0 ? '0' : String.fromCharCode(b[156]!);
    const size = rawSize(b.subarray(124, 136));
    this.next = dataOffset + Math.ceil(size / 512) * 512;
    if (EXTENDED.has(typeflag)) {
      this.extended = typeflag;
      return;
    }
    this.seen.set(dataOffset, {
      dataOffset,
      name: nameField.subarray(0, nul < 0 ? 100 : nul).toString('latin1'),
      nulInName: nul >= 0 && nameField.subarray(nul).some((x) => x !== 0),
      prefix: b[345] !== 0,
      typeflag,
      extendedBy: this.extended,
    });
    this.extended = null;
    // a hostile stream could hold millions of headers tar-stream never reaches: keep the map small
    if (this.seen.size > 1024) this.seen.delete(this.seen.keys().next().value!);
  }
}

/** The size field: octal, or base-256 when its first byte has the high bit set (sizes ≥ 8 GiB). */
function rawSize(f: Buffer): number {
  if (f[0]! & 0x80) {
    let n = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i]!;
    return n;
  }
  const s = f.toString('latin1').replace(/[\0 ]+$/, '').trim();
  const n = parseInt(s || '0', 8);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}
