// ioredis sends a value over tiercached's --max-bulk: the command fails
// once with an error naming the limit and the flag, is not resent, and the
// connection keeps working.
'use strict';
const Redis = require('ioredis');
const assert = require('assert');

function statsField(info, name) {
  const m = info.match(new RegExp('^' + name + ':(\\d+)', 'm'));
  return m ? Number(m[1]) : -1;
}

async function main() {
  const [path] = process.argv.slice(2);
  const a = new Redis({ path, maxRetriesPerRequest: 3 });
  let reconnects = 0;
  a.on('reconnecting', () => reconnects++);
  try {
    assert.strictEqual(await a.set('small', 'ok'), 'OK');
    const big = Buffer.alloc(17 * 1024 * 1024, 'b');
    await assert.rejects(a.set('big', big), (e) => {
      assert.match(e.message,
        /invalid bulk length: 17825792 bytes is over the --max-bulk limit of \d+/);
      return true;
    });
    // Same connection, no reconnect, the value was seen (and refused) once.
    assert.strictEqual(await a.get('small'), 'ok');
    assert.strictEqual(reconnects, 0, 'ioredis reconnected');
    const info = await a.info('tiercached');
    assert.strictEqual(statsField(info, 'tiercached_requests_too_big'), 1, info);
    assert.strictEqual(statsField(info, 'tiercached_protocol_errors'), 0, info);
    assert.strictEqual(await a.exists('big'), 0);
    console.log('ioredis: a value over --max-bulk fails once, clearly: OK');
  } finally {
    a.disconnect();
  }
}

main().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
