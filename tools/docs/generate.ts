import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { renderProtocolDoc } from './protocol-doc.ts';

const target = resolve(import.meta.dirname, '../../docs/protocol.md');
await writeFile(target, renderProtocolDoc());
console.log(`wrote ${target}`);
