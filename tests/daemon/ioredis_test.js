// ioredis against two tiercached instances on one Redis.
'use strict';
const Redis = require('ioredis');
const assert = require('assert');

async function waitFor(what, fn) {
  const deadline = Date.now() + 15000;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error('timed out: ' + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main() {
  const [pathA, pathB] = process.argv.slice(2);
  const a = new Redis({ path: pathA, maxRetriesPerRequest: 1 });
  const b = new Redis({ path: pathB, maxRetriesPerRequest: 1 });
  try {
    assert.strictEqual(await a.ping(), 'PONG');
    assert.strictEqual(await a.set('user:1', JSON.stringify({ n: 1 })), 'OK');
    assert.deepStrictEqual(JSON.parse(await a.get('user:1')), { n: 1 });
    assert.strictEqual(await a.set('user:2', 'two', 'EX', 60), 'OK');
    assert.ok((await a.ttl('user:2')) > 0);
    assert.strictEqual(await a.set('user:2', 'x', 'NX'), null);
    assert.deepStrictEqual(await a.mget('user:2', 'nope'), ['two', null]);
    assert.strictEqual(await a.exists('user:1', 'user:2', 'nope'), 2);
    const buf = Buffer.from([0, 1, 2, 255, 13, 10]);
    await a.set('bin', buf);
    assert.ok(buf.equals(await a.getBuffer('bin')));

    // Pipelines come back in order.
    const p = a.pipeline();
    for (let i = 0; i < 500; i++) p.set('p:' + i, String(i)).get('p:' + i);
    const res = await p.exec();
    for (let i = 0; i < 500; i++) {
      assert.strictEqual(res[2 * i][1], 'OK');
      assert.strictEqual(res[2 * i + 1][1], String(i));
    }

    // A write through A reaches B's L1.
    assert.strictEqual(await b.get('user:2'), 'two');
    await a.set('user:2', 'changed');
    await waitFor('B sees the new value', async () =>
      (await b.get('user:2')) === 'changed');
    assert.strictEqual(await a.del('user:1', 'user:2'), 2);
    await waitFor('B sees the delete', async () =>
      (await b.get('user:2')) === null);

    // Issue 9: a MULTI pipeline applies all of its commands and says so.
    const txr = await a.multi().set('tx:a', '1').incr('tx:b').exec();
    assert.deepStrictEqual(txr, [[null, 'OK'], [null, 1]]);
    assert.strictEqual(await b.get('tx:a'), '1');
    assert.strictEqual(await b.get('tx:b'), '1');
    // A forwarded write with no nameable key invalidates every L1.
    assert.strictEqual(await a.call('FLUSHALL'), 'OK');
    await waitFor('B sees the FLUSHALL', async () =>
      (await b.get('tx:a')) === null);
    console.log('ioredis: OK');
  } finally {
    a.disconnect();
    b.disconnect();
  }
}

main().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
