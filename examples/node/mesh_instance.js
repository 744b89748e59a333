// A mesh service instance coordinating through concord with node-redis (v4).
//
// Two instances of a "checkout" service start against different nodes of a
// concord cluster. Each one:
//
//   - opens a session and keeps it alive from a background loop,
//   - registers itself in the service registry, bound to the session,
//   - picks peers round robin (the cluster decides, so picks are exact),
//   - takes a lock with a fencing token and writes under LOCK.GUARD,
//   - rate-limits per user,
//   - pushes and claims jobs from a leased work queue,
//   - reports to a circuit breaker shared by the whole mesh.
//
// It is the Node port of examples/python/mesh_instance.py, step for step.
// Run it against `concord dev` (nodes on 6379-6381 by default); README.md
// in this directory says where `redis` comes from:
//
//     node examples/node/mesh_instance.js
//     CONCORD_NODES=127.0.0.1:7000,127.0.0.1:7001 node examples/node/mesh_instance.js
//
// It checks what it expects at every step and exits non-zero on a
// surprise, so it doubles as an end-to-end check (tests/dev.rs runs it).

'use strict';

const assert = require('node:assert/strict');
const { createClient, ErrorReply } = require('redis');

const SERVICE = 'checkout';

// A client of one node. node-redis v4 takes string arguments only, so
// every argument goes through String().
function connect(address, onError) {
  const at = address.lastIndexOf(':');
  const client = createClient({
    socket: { host: address.slice(0, at), port: Number(address.slice(at + 1)) },
  });
  client.on('error', onError);
  return {
    client,
    cmd: (...args) => client.sendCommand(args.map(String)),
  };
}

// A connection error on the main flow is a surprise; redis-py would raise.
function surprise(error) {
  console.error('connection error:', error);
  process.exit(1);
}

class Instance {
  constructor(name, address, node) {
    this.name = name;
    this.address = address;
    this.node = node;
    this.r = connect(node, surprise);
    this.session = null;
    this.stopped = false;
    this.wake = null;
  }

  async start(ttlMs = 6000) {
    await this.r.client.connect();
    this.session = await this.r.cmd('SESSION.CREATE', ttlMs, 'NAME', this.name);
    const added = await this.r.cmd(
      'REGISTRY.REGISTER', SERVICE, this.name, this.address, 0,
      'META', '{"version":"1.4.2"}', 'SESSION', this.session,
    );
    assert.equal(added, 1);
    // Keepalives on a connection of their own, as redis-py's pool gives
    // the Python example's thread: never queued behind a blocking command.
    // Errors there are retried at the next tick, so none is a surprise.
    this.keeper = connect(this.node, () => {});
    await this.keeper.client.connect();
    this.keepalive(ttlMs);
  }

  // Like threading.Event.wait: true as soon as the instance is stopped,
  // false after ms.
  wait(ms) {
    return new Promise((resolve) => {
      if (this.stopped) return resolve(true);
      const timer = setTimeout(() => { this.wake = null; resolve(false); }, ms);
      this.wake = () => { clearTimeout(timer); resolve(true); };
    });
  }

  async keepalive(ttlMs) {
    while (!(await this.wait(ttlMs / 3))) {
      try {
        await this.keeper.cmd('SESSION.KEEPALIVE', this.session);
      } catch (e) {
        if (e instanceof ErrorReply && e.message.startsWith('NOSESSION')) return;
        // Anything else (a node restarting, a lost connection): try again
        // at the next tick.
      }
    }
  }

  async shutdown() {
    this.stopped = true;
    if (this.wake) this.wake();
    assert.equal(await this.r.cmd('SESSION.DESTROY', this.session), 1);
    await this.keeper.client.quit();
  }
}

async function main() {
  const nodes = (process.env.CONCORD_NODES || '127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381')
    .split(',');
  const a = new Instance('checkout-a', '10.0.0.1:8080', nodes[0]);
  const b = new Instance('checkout-b', '10.0.0.2:8080', nodes[nodes.length - 1]);
  await a.start();
  await b.start();
  const r = a.r;

  // Service discovery: both instances listed; round robin alternates
  // exactly, whichever node each pick goes through.
  let listed = await r.cmd('REGISTRY.LIST', SERVICE);
  assert.equal(listed.length, 2, JSON.stringify(listed));
  const picks = [];
  for (const inst of [a, b, a, b]) {
    picks.push((await inst.r.cmd('REGISTRY.PICK', SERVICE, 'ROUND_ROBIN'))[0]);
  }
  assert.deepEqual([...picks].sort(), ['checkout-a', 'checkout-a', 'checkout-b', 'checkout-b']);
  console.log('round robin picks:', picks);

  // A lock with a fencing token; the guarded write only lands while the
  // token holds the lock.
  const token = await a.r.cmd('LOCK.ACQUIRE', 'inventory', a.name, 5000, 'WAIT', 2000);
  assert.ok(Number.isInteger(token), `token ${token}`);
  assert.equal(await a.r.cmd('LOCK.GUARD', 'inventory', token, 'SET', 'stock:sku-1', 41), 'OK');
  assert.equal(await b.r.cmd('LOCK.ACQUIRE', 'inventory', b.name, 5000), null);
  assert.equal(await a.r.cmd('LOCK.RELEASE', 'inventory', token), 1);
  const later = await b.r.cmd('LOCK.ACQUIRE', 'inventory', b.name, 5000);
  assert.ok(Number.isInteger(later) && later > token, `tokens ${token} then ${later}`);
  await assert.rejects(
    a.r.cmd('LOCK.GUARD', 'inventory', token, 'SET', 'stock:sku-1', 0),
    (e) => e instanceof ErrorReply && e.message.startsWith('FENCED'),
    'a stale token wrote',
  );
  assert.equal(await r.cmd('GET', 'stock:sku-1'), '41');
  await b.r.cmd('LOCK.RELEASE', 'inventory', later);
  console.log('fencing tokens:', token, 'then', later);

  // Rate limit per user: 5 per minute across both instances.
  let allowed = 0;
  for (let n = 0; n < 4; n++) {
    for (const inst of [a, b]) {
      const reply = await inst.r.cmd('RATELIMIT.ACQUIRE', 'user:42', 'FIXED', 5, 60000);
      assert.equal(reply.length, 4, JSON.stringify(reply));
      allowed += reply[0];
    }
  }
  assert.equal(allowed, 5);
  console.log('rate limit: 5 of 8 allowed');

  // A leased work queue: a pushes, b claims and acks; a stale token
  // cannot ack.
  for (let n = 0; n < 3; n++) {
    await a.r.cmd('QUEUE.PUSH', 'receipts', `order-${n}`);
  }
  const jobs = await b.r.cmd('QUEUE.CLAIM', 'receipts', b.name, 10000, 'COUNT', 10);
  assert.deepEqual(jobs.map((j) => j[1]), ['order-0', 'order-1', 'order-2'], JSON.stringify(jobs));
  for (const job of jobs) {
    assert.equal(job.length, 4, JSON.stringify(job));
    const [jobId, , attempt, claim] = job;
    assert.equal(attempt, 1);
    assert.equal(await b.r.cmd('QUEUE.ACK', 'receipts', jobId, claim), 1);
    assert.equal(await b.r.cmd('QUEUE.ACK', 'receipts', jobId, claim), 0);
  }
  // RESP2: the map comes as [field, value, ...].
  const flat = await r.cmd('QUEUE.STATS', 'receipts');
  const stats = {};
  for (let n = 0; n + 1 < flat.length; n += 2) stats[flat[n]] = flat[n + 1];
  console.log('queue stats:', JSON.stringify(stats));

  // One circuit breaker for the mesh: failures from both instances add up.
  await r.cmd('BREAKER.CONFIG', 'payments', 'FAILURES', 3, 'WINDOW', 10000, 'COOLDOWN', 60000);
  for (const inst of [a, b, a]) {
    assert.equal((await inst.r.cmd('BREAKER.ALLOW', 'payments'))[0], 1);
    await inst.r.cmd('BREAKER.RECORD', 'payments', 'FAILURE');
  }
  const allow = await b.r.cmd('BREAKER.ALLOW', 'payments');
  assert.deepEqual(allow, [0, 'OPEN']);
  console.log('breaker:', allow[1]);

  // An instance that leaves takes its registration with it.
  await b.shutdown();
  listed = await r.cmd('REGISTRY.LIST', SERVICE);
  assert.equal(listed.length, 1, JSON.stringify(listed));
  await a.shutdown();
  await a.r.client.quit();
  await b.r.client.quit();
  console.log('ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
