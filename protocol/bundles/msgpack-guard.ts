import { FarmError } from '../errors.ts';

/** How deep a bundle manifest may nest (it needs 5: manifest → files → file → chunks → chunk). */
export const MAX_MSGPACK_DEPTH = 32;

/**
 * Walks MessagePack bytes without building anything and refuses what would make the decoder
 * recurse deep or allocate for a length the bytes cannot hold (a "msgpack bomb"): msgpackr
 * recurses per level and trusts an array or map header's count. Each element takes at least one
 * byte, so a count larger than the bytes left is a lie. Extension types are refused: a manifest
 * is plain data.
 */
export function guardMsgpack(bytes: Uint8Array, what: string, maxDepth = MAX_MSGPACK_DEPTH): void {
  const bad = (why: string) => new FarmError('RB_BAD_BUNDLE', `${what}: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  // items still to read at each open level; the walk is iterative so depth costs no stack
  const pending: number[] = [1];
  const need = (n: number) => {
    if (pos + n > bytes.length) throw bad(`MessagePack ends early (at byte ${pos}, ${n} more needed)`);
  };
  const open = (count: number) => {
    if (count > bytes.length - pos) throw bad(`a MessagePack header at byte ${pos} claims ${count} items, more than the ${bytes.length - pos} bytes left`);
    if (pending.length > maxDepth) throw bad(`MessagePack nests deeper than ${maxDepth} levels`);
    if (count > 0) pending.push(count);
  };
  while (pending.length > 0) {
    const top = pending.length - 1;
    if (pending[top] === 0) {
      pending.pop();
      continue;
    }
    pending[top]!--;
    need(1);
    const b = bytes[pos++]!;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) continue;
    if (b >= 0x80 && b <= 0x8f) { open((b & 0x0f) * 2); continue; }
    if (b >= 0x90 && b <= 0x9f) { open(b & 0x0f); continue; }
    if (b >= 0xa0 && b <= 0xbf) { need(b & 0x1f); pos += b & 0x1f; continue; }
    const skip = (n: number) => { need(n); pos += n; };
    const len = (n: 1 | 2 | 4) => {
      need(n);
      const v = n === 1 ? view.getUint8(pos) : n === 2 ? view.getUint16(pos) : view.getUint32(pos);
      pos += n;
      return v;
    };
    switch (b) {
      case 0xc4: case 0xd9: skip(len(1)); break; // bin8, str8
      case 0xc5: case 0xda: skip(len(2)); break;
      case 0xc6: case 0xdb: skip(len(4)); break;
      case 0xca: skip(4); break; // float32
      case 0xcb: skip(8); break;
      case 0xcc: case 0xd0: skip(1); break;
      case 0xcd: case 0xd1: skip(2); break;
      case 0xce: case 0xd2: skip(4); break;
      case 0xcf: case 0xd3: skip(8); break;
      case 0xdc: open(len(2)); break; // array16
      case 0xdd: open(len(4)); break;
      case 0xde: open(len(2) * 2); break; // map16: keys and values
      case 0xdf: open(len(4) * 2); break;
      default: throw bad(`MessagePack type 0x${b.toString(16)} at byte ${pos - 1} is not allowed in a manifest (extension or reserved)`);
    }
  }
  if (pos !== bytes.length) throw bad(`${bytes.length - pos} bytes follow the MessagePack value`);
}
