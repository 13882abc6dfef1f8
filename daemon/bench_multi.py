#!/usr/bin/env python3
"""A 10-command MULTI/EXEC, one client, one transaction at a time.

Usage: bench_multi.py HOST PORT N
Sends MULTI, INCR on 10 keys, EXEC in one write, waits for EXEC's reply,
N times, and prints the median latency in ms (as redis-benchmark's --csv
p50). redis-benchmark cannot send a transaction as one request, so
daemon/bench.sh runs this against redis-server and tiercached alike: the
client's own cost is the same on both sides of the ratio.
"""
import socket
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cmds = ["MULTI"] + ["INCR bench:multi:%d" % i for i in range(10)] + ["EXEC"]
req = "".join("*%d\r\n%s" % (len(c.split()), "".join(
    "$%d\r\n%s\r\n" % (len(a), a) for a in c.split())) for c in cmds).encode()
# +OK, 10 x +QUEUED, *10, 10 x :n : one line each.
lines = 1 + 10 + 1 + 10

s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for i in range(n):
    t0 = time.perf_counter_ns()
    s.sendall(req)
    got = b""
    while got.count(b"\r\n") < lines:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        got += chunk
    lat.append(time.perf_counter_ns() - t0)
    if b"-" in got[:1] or b"\r\n-" in got:
        sys.exit("error reply: %r" % got)
s.close()
lat.sort()
print("%.3f" % (lat[len(lat) // 2] / 1e6))
