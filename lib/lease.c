/*
 * Liveness: when may this instance serve its L1?
 *
 * Every lease/4 the bus thread sends one heartbeat on the command
 * connection: a script that refreshes this instance in the members sorted
 * set (score: the Redis server's clock + lease) and PUBLISHes a numbered
 * token on this instance's own heartbeat channel, to which the subscriber
 * connection is subscribed. When the token comes back on the subscriber, it
 * proves two things at once:
 *   - every invalidation published before the script ran has reached the
 *     subscriber, in order, before the token, and has been applied (apply.c
 *     runs synchronously on this thread);
 *   - strict writers count this instance as a member until at least the
 *     score (see the count script), so they wait for our acknowledgement or
 *     for their own lease.
 * L1 may then be served until the token's send time (taken before the
 * script ran) + lease x (1 - clock margin). A lost, hung or refused
 * connection therefore stops L1 from being served within one lease, by
 * itself, and nothing depends on how a client library routes replies on a
 * subscribed connection.
 *
 * Redis Cluster. A write publishes on the channel of the node that runs
 * it ("<channel>@<host>:<port>", cluster.h; l2_cluster.c picks it per
 * attempt, so a write sent again after MOVED or ASK publishes on its new
 * master's channel), and the bus subscribes to each node's channel on
 * that node itself: the main subscription on the master of the state
 * keys (where the heartbeat script runs and publishes its token, as on
 * one Redis), a link (bus.c) on every other node that master's CLUSTER
 * NODES lists: masters with or without slots, and replicas, all but the
 * nodes flagged fail, noaddr or handshake. Once the heartbeat script's
 * reply is back, the same token goes through every link as a PING on its
 * subscribed connection, which Redis answers in order after the messages
 * it queued there before. So a replica promoted by a failover (a manual
 * CLUSTER FAILOVER too, whose demoted master stays up and keeps answering
 * tokens) or a master a slot migrates onto (ASK-redirected writes before
 * the final SETSLOT NODE, MOVED ones after) already has a proven
 * subscription when writes start running there; none is proven by the
 * cluster bus, so a dropped cluster-bus link loses nothing, and a dead or
 * hung node stops the lease within one.
 * Nodes that join after the bus connected: every lease / 2 the bus asks
 * CLUSTER NODES of the state keys' master on its heartbeat connection
 * (bus.c, with the CLUSTER INFO watch, cluster.h). A list that names a
 * node this bus has no subscription on resets the bus (L1 dropped; the
 * next connect subscribes there); a list that names none proves the
 * topology as of the poll's send time T (taken before it was sent; the
 * connect's own CLUSTER NODES is the first). L1 may be served until the
 * least of what the heartbeat, every link and the last such poll proved
 * (each: its send time + lease). Why that suffices: a write W ran on node
 * N at w and returned at r; a reader serves at t > r + lease (what async
 * promises), or at t > r after a strict writer waited its lease out
 * without the reader's ack (r > w + lease): either way t > w + lease. If
 * the bus subscribes on N, its tokens prove W as on one Redis. If not,
 * the poll the reader served on (t < T + lease, so T > w) listed no N:
 * the state keys' master did not know N at a time N had already run a
 * write. That is what remains: the gossip
 * delay between a node becoming reachable for writes (CLUSTER MEET, or
 * back from FAIL) and the state keys' master listing it. A slot can only
 * be handed to a node the handing node knows, and clients only reach it
 * by MOVED or ASK from there, but the state keys' master may be a third
 * node: Redis gossips to random nodes every 100 ms and pings any node
 * silent for cluster-node-timeout / 2, so in practice the delay is within
 * cluster-node-timeout / 2; a partitioned cluster bus has no bound. Nodes
 * flagged fail are not subscribed to (the cluster agreed they are down
 * and handed their slots on; the CLUSTER INFO watch dropped L1 when they
 * failed); one that comes back is listed again, which resets the bus.
 * Costs per instance: one subscriber connection per node (3 masters and
 * 3 replicas: 6, plus the heartbeat connection), one token per node per
 * heartbeat, and one CLUSTER INFO + one CLUSTER NODES on the state keys'
 * master every lease / 2. The PINGs wait for
 * the script's reply so that they run after it: strict writers count
 * members after their write (publish.c), and a heartbeat that ran after
 * the count must prove the write's invalidation.
 *
 * Clocks. Local deadlines use tc__now_ns() (CLOCK_BOOTTIME: counts
 * suspend). Member scores use the Redis server's TIME, so no two machines'
 * clocks are compared. A wall-clock step on the Redis host is absorbed:
 * writers count a member for one lease beyond its score (a forward step of
 * up to a lease is harmless), and every script records the last TIME it
 * saw: a gap of more than a lease, or time going backwards, is taken as a
 * step and every member is re-scored to now + lease instead of pruned.
 * Losing the members set (FLUSHALL, FLUSHDB, an eviction, a failover to
 * a replica that never had it) would let a writer count only the members
 * that have heartbeated since, while others still hold leases proven
 * before the loss. The first heartbeat that finds the set missing records
 * when ("rebuilt"), and the count answers "unknown" from the loss until a
 * lease after that, so writers wait out their lease instead. A fleet's very
 * first heartbeat looks the same, so strict writes in a channel's first
 * lease wait it out too.
 * Remaining assumptions: instances' clocks run at rates within
 * clock_margin_pct of each other and of the server's, every instance on
 * a channel uses the same lease_ms, and commands a dropped connection
 * sent never run after those of the connection that replaced it.
 *
 * Idle. The lease matters only while L1 is read. Readers note that they
 * read (bus->reading, one relaxed load per read, a store at most once per
 * tick); a bus that saw no read for idle_after_ms goes idle: it makes L1
 * unservable itself (so nothing depends on the lease lapsing in time),
 * ignores heartbeat tokens still in flight, and sends the keepalive script
 * at once, which sets its member score to -now: counted by no writer
 * (every count and re-score looks only at scores a writer at the last
 * script time could have counted), still present so that the set exists
 * while every instance is idle and so that an idle strict writer finds
 * itself in it. The subscription stays: invalidations are
 * still applied (and strict messages acknowledged), so L1 stays coherent
 * as long as the connection does. Every max(2 s, lease) a keepalive (the
 * same script without "leave") keeps the keys alive and sends a token on
 * the heartbeat channel that extends nothing but is awaited like a
 * heartbeat's, so a hung or dead connection is still found and replaced
 * (the replacement flushes L1 as any reconnect does). The first read that
 * finds the bus idle goes to L2 (L1 is not servable) and wakes the bus
 * thread, which heartbeats at once; L1 serves again when that token comes
 * back, which proves, as any heartbeat does, that every invalidation
 * published before it was applied and that strict writers count us from
 * then on (a writer whose count ran before our heartbeat published before
 * it, on the same subscription).
 * The epoch (INFO replication) is checked by the first heartbeat on each
 * new connection, and by every heartbeat with Sentinel: a master's
 * replication id can change under a connection only through a failover,
 * which breaks (or demotes: READONLY) every connection to it.
 *
 * Bus thread only, except l1_ok_until (atomic, read by every reader).
 */
#include <stdio.h>
#include <string.h>

#include "bus_internal.h"
#include "clock.h"
#include "parse.h"
#include "sentinel.h"

/* The clock key holds "<last> <rebuilt>": the last server TIME any
 * heartbeat saw, and when the members set was last found missing (lost to
 * FLUSHALL, FLUSHDB, an eviction, a failover to a replica that never had
 * it, or a fleet's very first heartbeat: these cannot be told apart). */
#define TC__CLOCK_PARSE                                                     \
    "local v = redis.call('GET', KEYS[2]) "                               \
    "local last, rebuilt = 0, nil "                                       \
    "if v then "                                                          \
    "  local a, b = string.match(v, '^(%d+) ?(%d*)$') "                   \
    "  last = tonumber(a) or 0 "                                          \
    "  rebuilt = tonumber(b) "                                            \
    "end "

/* The master's replication id, which a replica promoted by a failover
 * changes (INFO may be called from scripts; ROLE may not). An ACL user
 * without INFO, or a renamed INFO, gives '' everywhere: no fence, as
 * before the epoch existed, rather than a bus that never comes up. */
#define REPLID_LUA                                                           \
    "local info = redis.pcall('INFO', 'replication') "                      \
    "local rid = type(info) == 'string' and "                              \
    "string.match(info, 'master_replid:(%w+)') or '' "

/* The members a writer could count at the last script time `last`
 * (count: score >= time - lease): a member scored below that had lapsed
 * before any clock step that came after, and idle members (score 0) serve
 * nothing. */
#define TC__LIVE_AT_LAST                                                    \
    "redis.call('ZRANGEBYSCORE', KEYS[1], last - lease, '+inf') "

/* KEYS: members, clock, epoch. ARGV: id, lease ms, heartbeat channel,
 * token, "1" to check the epoch. The epoch key holds "<replid> <since
 * ms>": a replid that differs from the server's means this dataset came
 * from a master that failed over; the members set is then a replica's copy
 * that may lack instances still serving L1 from the old master's proofs,
 * so members are re-scored and `since` (now) fences strict writers for one
 * lease (count script). */
static const char heartbeat_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local lease = tonumber(ARGV[2]) "
    TC__CLOCK_PARSE
    "if not v or redis.call('EXISTS', KEYS[1]) == 0 then "
    "  rebuilt = now "
    "end "
    "local moved = false "
    "if ARGV[5] == '1' then "
    REPLID_LUA
    "  local ep = redis.call('GET', KEYS[3]) "
    "  moved = ep and string.match(ep, '^(%w*)') ~= rid "
    "  if moved or not ep then "
    "    redis.call('SET', KEYS[3], rid .. ' ' .. (moved and now or 0)) "
    "  end "
    "end "
    "redis.call('PEXPIRE', KEYS[3], 10 * lease + 60000) "
    "local ids = nil "
    "if moved then "
    "  ids = redis.call('ZRANGE', KEYS[1], 0, -1) "
    "elseif last > 0 and (now < last or now - last > lease) then "
    "  ids = " TC__LIVE_AT_LAST
    "end "
    "for _, id in ipairs(ids or {}) do "
    "  redis.call('ZADD', KEYS[1], now + lease, id) "
    "end "
    "redis.call('SET', KEYS[2], now .. ' ' .. (rebuilt or 0), "
    "           'PX', 10 * lease + 60000) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (60000 + 10 * lease - now), "
    "           now - lease - 1) "
    "redis.call('ZADD', KEYS[1], now + lease, ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], 10 * lease + 60000) "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) "
    "return ARGV[4]";

/* KEYS: members, clock, epoch. ARGV: id, lease ms, heartbeat channel,
 * token. An idle instance's keepalive: scores it -now (no writer counts
 * a negative score; a writer finds itself in the set by it, publish.c;
 * heartbeats prune it once it is older than the keys' expiry). It extends
 * no lease and leaves `last` alone (the step check needs heartbeat
 * times), but keeps the keys from expiring and records a lost set exactly
 * as a heartbeat would, since it recreates the set. */
static const char keepalive_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local lease = tonumber(ARGV[2]) "
    TC__CLOCK_PARSE
    "if not v or redis.call('EXISTS', KEYS[1]) == 0 then "
    "  redis.call('SET', KEYS[2], last .. ' ' .. now, "
    "             'PX', 10 * lease + 60000) "
    "else "
    "  redis.call('PEXPIRE', KEYS[2], 10 * lease + 60000) "
    "end "
    "redis.call('ZADD', KEYS[1], -now, ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], 10 * lease + 60000) "
    "redis.call('PEXPIRE', KEYS[3], 10 * lease + 60000) "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) "
    "return ARGV[4]";

/* KEYS: members, clock, epoch. ARGV: lease ms, the writer's id
 * (optional). Read-only: the ids that
 * may be serving L1 (when the server's clock seems to have stepped: all
 * those a writer could have counted at the last script time), or 0 when
 * that cannot be known, and the writer then waits out
 * its lease, which is always safe (publish.c):
 *   - while the epoch fences: within a lease of the first heartbeat after a
 *     failover (or before it), when instances absent from this copy of the
 *     set may still serve L1 from the old master's proofs (all sent before
 *     the old master's end, which preceded the promotion);
 *   - when the writer itself is not in the set (heartbeat or keepalive):
 *     the set was lost (FLUSHDB, FLUSHALL, this very write among them, an
 *     eviction) and not yet rebuilt by our own next script;
 *   - when the set is missing, or was rebuilt less than a lease ago, so an
 *     instance whose last heartbeat ran before the loss may still hold a
 *     lease and not be listed yet. */
static const char count_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local lease = tonumber(ARGV[1]) "
    "local ep = redis.call('GET', KEYS[3]) "
    "if ep then "
    "  local old, since = string.match(ep, '^(%w*) (%d+)$') "
    REPLID_LUA
    "  if old ~= rid or now < tonumber(since) + lease then return 0 end "
    "end "
    TC__CLOCK_PARSE
    "if not v or redis.call('EXISTS', KEYS[1]) == 0 or "
    "   (ARGV[2] and not redis.call('ZSCORE', KEYS[1], ARGV[2])) then "
    "  return 0 "
    "end "
    "if last > 0 and (now < last or now - last > lease) then "
    "  return " TC__LIVE_AT_LAST
    "end "
    "if rebuilt and (now < rebuilt or now - rebuilt <= lease) then "
    "  return 0 "
    "end "
    "return redis.call('ZRANGEBYSCORE', KEYS[1], now - lease, '+inf')";

const char *tc__bus_count_script(void)
{
    return count_script;
}

/* How long a proof sent at time t lets L1 be served: the lease, less the
 * margin for clocks that run at different rates. */
static uint64_t lease_ns(const tc__bus *bus)
{
    return tc__ms_to_ns(bus->cfg->lease_ms) *
           (100 - bus->cfg->clock_margin_pct) / 100;
}

static void publish_deadline(tc__bus *bus, uint64_t until)
{
    if (!bus->subscribed || !bus->tracking_ready)
        return;
    if (atomic_load(&bus->l1_ok_until) == 0 && until > tc__now_ns())
        atomic_fetch_add(&bus->generation, 1);
    atomic_store_explicit(&bus->l1_ok_until, until, memory_order_release);
    atomic_store(&bus->idle_up, 0);
}

/* L1 may be served until the least of what the heartbeat and, on a
 * cluster, every other master's link last proved: each proves only the
 * invalidations published on its own master. */
static void publish_proven(tc__bus *bus)
{
    uint64_t until = bus->hb_until;
    for (size_t i = 0; i < bus->nlinks && until; i++)
        if (bus->links[i].until < until)
            until = bus->links[i].until;
    if (bus->cfg->cluster && bus->topo_until < until)
        until = bus->topo_until;
    if (until)
        publish_deadline(bus, until);
}

/* Tokens in flight prove nothing from now on (a new connection, going
 * idle, waking). */
static void skip_in_flight(tc__bus *bus)
{
    bus->hb_oldest = bus->hb_next;
    bus->hb_until = 0;
    for (size_t i = 0; i < bus->nlinks; i++) {
        bus->links[i].oldest = bus->hb_next;
        bus->links[i].until = 0;
    }
}

static void on_link_pong(tc__aconn *ac, redisReply *r, void *priv);

/* Redis Cluster: token `n` through every other master, as a PING on its
 * subscribed connection, once the heartbeat script that carries it has
 * run (its reply is here): Redis answers the PING in order with the
 * messages it queued there before, so the pong proves every invalidation
 * that master published before the PING ran, and the PING ran after the
 * script (publish.c needs that order for strict writes). A PING that
 * cannot be queued leaves its link's token unanswered: the lease waits,
 * and the hung check resets. */
static void ping_links(tc__bus *bus, const redisReply *r)
{
    uint64_t n;
    if (!bus->nlinks || r->type != REDIS_REPLY_STRING ||
        tc__parse_u64(r->str, r->len, 0, UINT64_MAX, &n) != 0 ||
        n >= bus->hb_next)
        return;
    for (size_t i = 0; i < bus->nlinks; i++)
        if (n >= bus->links[i].oldest)
            (void)tc__aconn_commandf(bus->links[i].sub, on_link_pong, bus,
                                     "PING %s", r->str);
}

static void on_heartbeat_reply(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    if (r && ac == bus->cmd && r->type != REDIS_REPLY_ERROR)
        ping_links(bus, r);
    /* Success is proven by the token on the subscriber, not by this reply;
     * a refusal (ACL, a script error) just never extends the lease. */
    if (r && ac == bus->cmd && r->type == REDIS_REPLY_ERROR) {
        /* READONLY: our master was demoted by a failover; tell the pool. */
        if (bus->cfg->sentinel &&
            tc__sentinel_error_means_demoted(r->str, r->len))
            tc__sentinel_lost_master(bus->cfg->sentinel, bus->sgen);
        tc__bus_reset(bus, "heartbeat refused");
    }
}

static void on_link_pong(tc__aconn *ac, redisReply *r, void *priv)
{
    tc__bus *bus = priv;
    for (size_t i = 0; r && i < bus->nlinks; i++)
        if (bus->links[i].sub == ac) {
            tc__lease_on_link_pong(bus, &bus->links[i], r);
            return;
        }
}

/* Heartbeats and keepalives share the token sequence and the ring, so a
 * hung connection is found the same way whichever was sent. `epoch`: the
 * heartbeat checks the master epoch. */
static int send_token(tc__bus *bus, int keepalive, int epoch)
{
    char lease[16], token[24];
    uint64_t n = bus->hb_next;
    int r;
    if (!bus->cmd || n - bus->hb_oldest >= TC__LEASE_RING)
        return -1;
    for (size_t i = 0; i < bus->nlinks; i++)
        if (n - bus->links[i].oldest >= TC__LEASE_RING)
            return -1;
    snprintf(lease, sizeof(lease), "%u", bus->cfg->lease_ms);
    snprintf(token, sizeof(token), "%llu", (unsigned long long)n);
    bus->hb_sent[n % TC__LEASE_RING] = tc__now_ns();
    if (keepalive)
        r = tc__aconn_commandf(bus->cmd, on_heartbeat_reply, bus,
                               "EVAL %s 3 %s %s %s %s %s %s %s",
                               keepalive_script, bus->members_key,
                               bus->clock_key, bus->epoch_key, bus->id, lease,
                               bus->ch_pong, token);
    else
        r = tc__aconn_commandf(bus->cmd, on_heartbeat_reply, bus,
                               "EVAL %s 3 %s %s %s %s %s %s %s %s",
                               heartbeat_script, bus->members_key,
                               bus->clock_key, bus->epoch_key, bus->id, lease,
                               bus->ch_pong, token, epoch ? "1" : "0");
    if (r != 0)
        return -1;
    bus->hb_next = n + 1;
    return 0;
}

static void send_heartbeat(tc__bus *bus)
{
    int epoch = bus->cfg->sentinel || !bus->epoch_checked;
    if (send_token(bus, 0, epoch) == 0 && epoch)
        bus->epoch_checked = 1;
}

/* Idle: every max(2 s, lease). */
static uint64_t keepalive_ns(const tc__bus *bus)
{
    uint64_t ms = bus->cfg->lease_ms > 2000 ? bus->cfg->lease_ms : 2000;
    return tc__ms_to_ns(ms);
}

static void send_keepalive(tc__bus *bus)
{
    bus->next_keepalive_ns = tc__now_ns() + keepalive_ns(bus);
    (void)send_token(bus, 1, 0);
}

static int proving(const tc__bus *bus)
{
    return bus->sub && bus->subscribed && bus->tracking_ready;
}

void tc__lease_on_pong(tc__bus *bus, const char *buf, size_t len)
{
    uint64_t n;
    if (tc__parse_u64(buf, len, 0, UINT64_MAX, &n) != 0 || n < bus->hb_oldest ||
        n >= bus->hb_next)
        return; /* from a connection we dropped, or not ours */
    bus->hb_oldest = n + 1;
    /* While idle every token in the window is a keepalive's (going idle
     * and waking both skip what was in flight). */
    if (!bus->idle) {
        bus->hb_until = bus->hb_sent[n % TC__LEASE_RING] + lease_ns(bus);
        publish_proven(bus);
    } else {
        atomic_store(&bus->idle_up, 1);
    }
}

void tc__lease_on_link_pong(tc__bus *bus, tc__bus_link *l,
                            const redisReply *r)
{
    uint64_t n;
    const redisReply *t;
    if (r->type == REDIS_REPLY_ERROR) {
        tc__bus_reset(bus, "bus PING refused");
        return;
    }
    /* ["pong", token] on a subscribed connection. */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return;
    t = r->element[1];
    if (t->type != REDIS_REPLY_STRING ||
        tc__parse_u64(t->str, t->len, 0, UINT64_MAX, &n) != 0 ||
        n < l->oldest || n >= bus->hb_next)
        return; /* skipped (idle, waking) */
    l->oldest = n + 1;
    if (!bus->idle) {
        l->until = bus->hb_sent[n % TC__LEASE_RING] + lease_ns(bus);
        publish_proven(bus);
    }
}

void tc__lease_on_topology(tc__bus *bus, uint64_t sent_ns)
{
    bus->topo_until = sent_ns + lease_ns(bus);
    if (!bus->idle)
        publish_proven(bus);
}

void tc__lease_ready(tc__bus *bus)
{
    if (!bus->subscribed || !bus->tracking_ready)
        return;
    /* Anything in L1 now was filled while no subscription was proven (Redis
     * down at create, a refused or lost bus): it may have missed any
     * invalidation. Drop it all; this also bumps every generation, so fills
     * in flight fail. Then prove ourselves. */
    tc__l1_clear(bus->l1);
    atomic_fetch_add(&bus->flushes, 1);
    if (atomic_load(&bus->generation))
        atomic_fetch_add(&bus->reconnects, 1);
    tc__log(&bus->cfg->log, TC_LOG_INFO,
            "bus subscribed: L1 flushed, serving after the first heartbeat");
    tc__backoff_reset(&bus->backoff);
    skip_in_flight(bus);
    bus->epoch_checked = 0;
    if (bus->idle)
        send_keepalive(bus);
    else
        send_heartbeat(bus);
}

void tc__lease_drop(tc__bus *bus)
{
    atomic_store_explicit(&bus->l1_ok_until, 0, memory_order_release);
    atomic_store(&bus->idle_up, 0);
    skip_in_flight(bus);
    bus->topo_until = 0;
}

/* No L1 read for idle_after_ms (see "Idle" above). L1 stops being served
 * before the leave is sent, so no writer that stops counting us can race a
 * read served on the old proof. 1, not 0: still "up" for the generation
 * (publish_deadline), the subscription never broke. */
static void go_idle(tc__bus *bus)
{
    bus->idle = 1;
    if (atomic_load(&bus->l1_ok_until) != 0)
        atomic_store_explicit(&bus->l1_ok_until, 1, memory_order_release);
    skip_in_flight(bus);
    if (proving(bus))
        send_keepalive(bus);
    else
        bus->next_keepalive_ns = tc__now_ns() + keepalive_ns(bus);
}

void tc__lease_wake(tc__bus *bus)
{
    if (!bus->idle ||
        atomic_load(&bus->reading) == TC__READ_IDLE) /* not a reader's */
        return;
    bus->idle = 0;
    bus->last_read_ns = tc__now_ns();
    skip_in_flight(bus); /* keepalive tokens prove no lease */
    if (proving(bus))
        send_heartbeat(bus);
}

/* Has an L1 read been noted since the last tick? Goes idle after
 * idle_after_ms without one. */
static void track_reads(tc__bus *bus, uint64_t now)
{
    int none = TC__READ_NONE;
    if (bus->idle)
        return;
    if (atomic_exchange(&bus->reading, TC__READ_NONE) != TC__READ_NONE) {
        bus->last_read_ns = now;
        return;
    }
    if (bus->cfg->idle_after_ms == TC_IDLE_NEVER ||
        now - bus->last_read_ns < tc__ms_to_ns(bus->cfg->idle_after_ms))
        return;
    if (atomic_compare_exchange_strong(&bus->reading, &none, TC__READ_IDLE))
        go_idle(bus);
    else
        bus->last_read_ns = now; /* a read came in meanwhile */
}

void tc__lease_tick(tc__bus *bus)
{
    uint64_t now;
    track_reads(bus, tc__now_ns());
    if (!proving(bus))
        return;
    now = tc__now_ns(); /* not before a token track_reads() sent */
    if (bus->hb_oldest != bus->hb_next) {
        uint64_t oldest = bus->hb_sent[bus->hb_oldest % TC__LEASE_RING];
        uint64_t limit = 2 * tc__ms_to_ns((uint64_t)bus->cfg->lease_ms +
                                          bus->cfg->command_timeout_ms);
        if (now - oldest > limit) {
            tc__bus_reset(bus, "bus connection hung (no heartbeat back)");
            return;
        }
    }
    for (size_t i = 0; i < bus->nlinks; i++) {
        tc__bus_link *l = &bus->links[i];
        uint64_t limit = 2 * tc__ms_to_ns((uint64_t)bus->cfg->lease_ms +
                                          bus->cfg->command_timeout_ms);
        if (l->oldest != bus->hb_next &&
            now - bus->hb_sent[l->oldest % TC__LEASE_RING] > limit) {
            tc__bus_reset(bus, "bus subscription on a cluster master hung "
                               "(no token back)");
            return;
        }
    }
    if (!bus->idle)
        send_heartbeat(bus);
    else if (now >= bus->next_keepalive_ns)
        send_keepalive(bus);
}

uint64_t tc__bus_l1_read_until(tc__bus *bus)
{
    /* The first reader after a tick marks the read; the first after the
     * bus went idle also wakes it (once: the exchange). */
    if (atomic_load_explicit(&bus->reading, memory_order_relaxed) !=
            TC__READ_SEEN &&
        atomic_exchange_explicit(&bus->reading, TC__READ_SEEN,
                                 memory_order_relaxed) == TC__READ_IDLE)
        ev_async_send(bus->loop, &bus->wake);
    return atomic_load_explicit(&bus->l1_ok_until, memory_order_acquire);
}

uint64_t tc__bus_l1_ok_until(tc__bus *bus)
{
    return atomic_load_explicit(&bus->l1_ok_until, memory_order_acquire);
}

int tc__bus_up(tc__bus *bus, uint64_t now_ns)
{
    return tc__bus_l1_ok(bus, now_ns) || atomic_load(&bus->idle_up);
}

int tc__bus_l1_ok(tc__bus *bus, uint64_t now_ns)
{
    return now_ns < tc__bus_l1_ok_until(bus);
}
