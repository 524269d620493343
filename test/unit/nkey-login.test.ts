import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createUser } from '@nats-io/nkeys';
import { nkeyAuthenticator } from '@nats-io/transport-node';
import { nkeyLogin } from '../../actors/bus/nkey-login.ts';

test("nkey login - node:crypto's signature and public key are the NATS client's own", () => {
  for (let i = 0; i < 5; i++) {
    const seed = createUser().getSeed();
    const theirs = nkeyAuthenticator(seed);
    const ours = nkeyLogin(new TextDecoder().decode(seed));
    for (const nonce of ['', 'n0nce-Xy_1', 'a'.repeat(40)]) {
      assert.deepEqual(ours(nonce), theirs(nonce), `nonce '${nonce}'`);
    }
  }
  assert.throws(() => nkeyLogin('SUNOTASEED'), /invalid/i, 'a bad seed is refused');
});
