#!/usr/bin/env python3
"""Round-trip time of single commands, several servers interleaved.

Usage: bench_rtt.py ROUNDS N HOST:PORT [HOST:PORT ...]
For each round, each command (INCR, HSET: forwarded writes through
tiercached; STRLEN: a forwarded read) and each server in turn: N requests,
one at a time on one connection, and the median of their round trips.
Prints, per command, the median over the rounds for each server, in
microseconds. Finer than redis-benchmark's p50 (8 us buckets at these
latencies), and the servers alternate so that a noisy neighbour hurts all
alike. Used for daemon/README.md's latency notes (compare tiercached with
nutcracker proxying the same redis-server, and with redis-server itself).
"""
import socket
import statistics
import sys
import time


def enc(*args):
    return ("*%d\r\n" % len(args) + "".join(
        "$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode()


rounds, n = int(sys.argv[1]), int(sys.argv[2])
targets = sys.argv[3:]
reqs = {"INCR": enc("INCR", "rtt:ctr"), "HSET": enc("HSET", "rtt:h", "f", "v"),
        "STRLEN": enc("STRLEN", "rtt:ctr")}
socks = []
for t in targets:
    host, port = t.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    socks.append(s)
res = {(k, i): [] for k in reqs for i in range(len(targets))}
for _ in range(rounds):
    for k, q in reqs.items():
        for i, s in enumerate(socks):
            lat = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                s.sendall(q)
                got = s.recv(100)  # one integer reply, one line
                while not got.endswith(b"\r\n"):
                    got += s.recv(100)
                lat.append(time.perf_counter_ns() - t0)
                if got[:1] == b"-":
                    sys.exit("%s: error reply %r" % (targets[i], got))
            res[(k, i)].append(statistics.median(lat) / 1000)
print("%-8s %s" % ("us", " ".join("%12s" % t for t in targets)))
for k in reqs:
    print("%-8s %s" % (k, " ".join("%12.1f" % statistics.median(res[(k, i)])
                                   for i in range(len(targets)))))
