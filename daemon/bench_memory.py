#!/usr/bin/env python3
"""Memory per cached entry: tiercached against redis-server (issue 9).

Usage: bench_memory.py TCD_SOCK TCD_PID REDIS_SOCK N

Writes N keys ("mem:<i>", 32-byte values) straight to redis-server, then
reads each once through tiercached so that it enters tiercached's L1.
Prints one line per side: the bytes each process grew by per entry
(tiercached: VmRSS of its process; redis-server: INFO used_memory, its
allocator's own count, since its RSS keeps freed pages), plus L1's own
count of bytes charged. The keys are deleted afterwards.
"""
import sys

import redis


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def tc_info(t):
    return t.info("tiercache")


def main():
    tsock, tpid, rsock, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    r = redis.Redis(unix_socket_path=rsock)
    t = redis.Redis(unix_socket_path=tsock)
    val = b"v" * 32
    batch = 1000

    used0 = r.info("memory")["used_memory"]
    for lo in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for i in range(lo, min(n, lo + batch)):
            p.set(f"mem:{i}", val)
        p.execute()
    used1 = r.info("memory")["used_memory"]

    rss0 = rss(tpid)
    e0 = tc_info(t)
    for lo in range(0, n, batch):
        p = t.pipeline(transaction=False)
        for i in range(lo, min(n, lo + batch)):
            p.get(f"mem:{i}")
        got = p.execute()
        if any(g != val for g in got):
            sys.exit("a read through tiercached did not return the value")
    rss1 = rss(tpid)
    e1 = tc_info(t)

    entries = int(e1["l1_entries"]) - int(e0["l1_entries"])
    if entries < n * 9 // 10:
        sys.exit(f"only {entries} of {n} reads entered L1")
    charged = (int(e1["l1_bytes"]) - int(e0["l1_bytes"])) / entries
    tcd = (rss1 - rss0) / entries
    red = (used1 - used0) / n
    klen = sum(len(f"mem:{i}") for i in range(n)) / n
    print(f"memory per entry ({n} keys of {klen:.1f} bytes on average, "
          f"32-byte values; {entries} entered L1):")
    print(f"  tiercached RSS     {tcd:8.0f} B   (L1 charges {charged:.0f} B)")
    print(f"  redis-server       {red:8.0f} B   (INFO used_memory)")
    print(f"  ratio tiercached/redis-server: {tcd / red:.2f}x")

    for lo in range(0, n, batch):
        r.delete(*[f"mem:{i}" for i in range(lo, min(n, lo + batch))])


if __name__ == "__main__":
    main()
