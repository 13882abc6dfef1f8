// Real Node clients through tiercached and through plain redis-server, the
// same patterns on both, results compared: node-redis 4 (seed 001),
// cache-manager with an ioredis store, rate-limiter-flexible (its Lua
// script). Usage: node node_clients.js TIERCACHED_SOCK PLAIN_REDIS_SOCK
'use strict';
const assert = require('assert');
const { createClient } = require('redis');
const Redis = require('ioredis');
const { caching } = require('cache-manager');
const { redisStore } = require('cache-manager-ioredis-yet');
const { RateLimiterRedis } = require('rate-limiter-flexible');

async function waitFor(what, fn) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out: ' + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function nodeRedis(path, fn, opts = {}) {
  const c = createClient({ socket: { path, reconnectStrategy: false }, ...opts });
  c.on('error', () => {});
  await c.connect(); // must resolve (a db URL sends SELECT)
  try {
    return await fn(c);
  } finally {
    await c.quit();
  }
}

const patterns = {
  // node-redis 4: set EX, setEx, get, TTL (seed 001's set(key, v, {EX})).
  'node-redis set EX / setEx / get / ttl': (p) => nodeRedis(p, async (c) => {
    const r = [];
    r.push(await c.set('nr:a', JSON.stringify({ n: 1 }), { EX: 60 }));
    r.push(await c.setEx('nr:b', 60, 'two'));
    r.push(JSON.parse(await c.get('nr:a')));
    r.push(await c.get('nr:b'));
    const ttl = await c.ttl('nr:b');
    r.push(ttl > 0 && ttl <= 60);
    r.push(await c.get('nr:missing'));
    return r;
  }),
  // seed 001's delPattern: scanIterator + del.
  'node-redis scanIterator delPattern': (p) => nodeRedis(p, async (c) => {
    for (let i = 0; i < 25; i++) await c.set(`nr:del:${i}`, 'x');
    await c.set('nr:keep', 'y');
    const deleted = [];
    for await (const key of c.scanIterator({ MATCH: 'nr:del:*', COUNT: 10 })) {
      deleted.push(key);
      await c.del(key);
    }
    return [deleted.sort(), await c.exists('nr:del:3'), await c.get('nr:keep')];
  }),
  // seed 004's limiter: INCR, EXPIRE on the first hit.
  'node-redis INCR+EXPIRE limiter': (p) => nodeRedis(p, async (c) => {
    const seen = [];
    for (let i = 0; i < 6; i++) {
      const n = await c.incr('nr:rate');
      if (n === 1) await c.expire('nr:rate', 60);
      seen.push(n <= 5 ? 'allowed' : 'limited');
    }
    const ttl = await c.ttl('nr:rate');
    return [seen, ttl > 0 && ttl <= 60];
  }),
  'node-redis multi() warm-up': (p) => nodeRedis(p, async (c) => {
    const r = await c.multi().set('nr:w1', 'a').setEx('nr:w2', 60, 'b')
      .get('nr:w1').incr('nr:wc').exec();
    return [r, await c.mGet(['nr:w1', 'nr:w2'])];
  }),
  'node-redis pipeline (auto-pipelined Promise.all)': (p) => nodeRedis(p, async (c) => {
    const ops = [];
    for (let i = 0; i < 50; i++) ops.push(c.set(`nr:p:${i}`, String(i)));
    for (let i = 0; i < 50; i++) ops.push(c.get(`nr:p:${i}`));
    return Promise.all(ops);
  }),
  'node-redis publish/subscribe': (p) => nodeRedis(p, async (c) => {
    const sub = c.duplicate();
    sub.on('error', () => {});
    await sub.connect();
    const got = [];
    await sub.subscribe('nr:events', (msg, ch) => got.push([ch, msg]));
    await sub.pSubscribe('nr:ev*', (msg, ch) => got.push(['p', ch, msg]));
    const receivers = await c.publish('nr:events', JSON.stringify({ t: 'x' }));
    await waitFor('messages', () => got.length >= 2);
    await sub.unsubscribe('nr:events');
    await sub.pUnsubscribe();
    await sub.quit();
    return [receivers, got.sort()];
  }),
  'node-redis INFO stats/memory, PING': (p) => nodeRedis(p, async (c) => {
    const stats = await c.info('stats');
    const mem = await c.info('memory');
    return [/keyspace_hits:\d+/.test(stats), /used_memory:\d+/.test(mem),
      await c.ping()];
  }),
  'node-redis database 2 (SELECT on connect)': async (p) => {
    const in2 = await nodeRedis(p, async (c) => {
      await c.set('nr:db', 'two');
      return [await c.get('nr:db'), await c.dbSize()];
    }, { database: 2 });
    const in0 = await nodeRedis(p, (c) => c.get('nr:db'));
    return [in2, in0];
  },
  'ioredis subscriber mode, BLPOP, WATCH/MULTI': async (p) => {
    const sub = new Redis({ path: p });
    const pub = new Redis({ path: p });
    const blocker = new Redis({ path: p });
    try {
      const got = [];
      sub.on('message', (ch, msg) => got.push([ch, msg]));
      const n = await sub.subscribe('io:a', 'io:b');
      const popped = blocker.blpop('io:q', 5);
      const receivers = await pub.publish('io:a', 'hi');
      await pub.rpush('io:q', 'job');
      await waitFor('message', () => got.length >= 1);
      await sub.unsubscribe();
      const w = [];
      await pub.set('io:w', '1');
      await pub.watch('io:w');
      w.push(await pub.multi().set('io:w', '2').exec());
      await pub.watch('io:w');
      await blocker.set('io:w', 'other');
      w.push(await pub.multi().set('io:w', '3').exec());
      return [n, receivers, got, await popped, w, await pub.get('io:w')];
    } finally {
      sub.disconnect();
      pub.disconnect();
      blocker.disconnect();
    }
  },
  'cache-manager (ioredis store): set/get/wrap/del': async (p) => {
    const cache = await caching(redisStore, { path: p, ttl: 60000 });
    try {
      const r = [];
      await cache.set('cm:user:1', { name: 'ada' });
      r.push(await cache.get('cm:user:1'));
      let loads = 0;
      const load = async () => { loads++; return { v: 42 }; };
      r.push(await cache.wrap('cm:wrapped', load));
      r.push(await cache.wrap('cm:wrapped', load));
      r.push(loads);
      await cache.del('cm:user:1');
      r.push(await cache.get('cm:user:1'));
      const ttl = await cache.store.ttl('cm:wrapped');
      r.push(ttl > 0 && ttl <= 60000);
      return r;
    } finally {
      await cache.store.client.quit();
    }
  },
  'rate-limiter-flexible RateLimiterRedis (Lua), limit 5': async (p) => {
    const client = new Redis({ path: p, enableOfflineQueue: false });
    await waitFor('ioredis ready', () => client.status === 'ready');
    try {
      const rl = new RateLimiterRedis({ storeClient: client, points: 5,
        duration: 60, keyPrefix: 'rlf' });
      const out = [];
      for (let i = 0; i < 6; i++) {
        try {
          const res = await rl.consume('user:1');
          out.push(['ok', res.remainingPoints]);
        } catch (rej) {
          if (rej instanceof Error) throw rej;
          out.push(['rejected', rej.remainingPoints,
            rej.msBeforeNext > 0 && rej.msBeforeNext <= 60000]);
        }
      }
      return out;
    } finally {
      await client.quit();
    }
  },
};

async function main() {
  const [tcd, plain] = process.argv.slice(2);
  let failed = 0;
  for (const [name, run] of Object.entries(patterns)) {
    let a, b;
    try {
      a = await run(tcd);
      b = await run(plain);
      assert.deepStrictEqual(a, b);
      console.log(`| ${name} | same |`);
    } catch (e) {
      failed++;
      console.log(`| ${name} | DIFFERENT |`);
      console.error(`${name}: ${e && e.stack ? e.stack : e}\n` +
        `  tiercached: ${JSON.stringify(a)}\n  redis:      ${JSON.stringify(b)}`);
    }
  }
  console.log(`${Object.keys(patterns).length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
