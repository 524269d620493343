import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { renderProtocolDoc } from '../../tools/docs/protocol-doc.ts';

test('docs - docs/protocol.md matches the code (regenerate with npm run docs)', async () => {
  const onDisk = (await readFile(resolve(import.meta.dirname, '../../docs/protocol.md'), 'utf8')).split('\n');
  const made = renderProtocolDoc().split('\n');
  // the first line that differs, not the whole documents: node's diff of two 280 KB strings never ends
  const at = made.findIndex((line, i) => line !== onDisk[i]);
  const first = at >= 0 ? at : made.length < onDisk.length ? made.length : -1;
  assert.equal(first, -1, `docs/protocol.md is out of date from line ${first + 1}: it has ${JSON.stringify(onDisk[first] ?? '(end of file)')}, the code makes ${JSON.stringify(made[first] ?? '(end of file)')}; run npm run docs`);
});
