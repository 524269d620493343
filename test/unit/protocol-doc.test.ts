import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { renderProtocolDoc } from '../../tools/docs/protocol-doc.ts';

test('docs - docs/protocol.md matches the code (regenerate with npm run docs)', async () => {
  const onDisk = await readFile(resolve(import.meta.dirname, '../../docs/protocol.md'), 'utf8');
  assert.equal(onDisk, renderProtocolDoc());
});
