"""Django's cache framework with django-redis (Debian python3-django-redis)
through tiercached and through plain redis-server, results compared.

Usage: django_compat.py TIERCACHED_SOCK PLAIN_REDIS_SOCK
Each endpoint runs in a process of its own (Django is configured once per
process): `django_compat.py --one SOCK` prints that endpoint's results.
"""
import json
import subprocess
import sys
import threading


def run_one(sock):
    import django
    from django.conf import settings

    settings.configure(CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "unix://" + sock + "?db=0",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
            "KEY_PREFIX": "dj",
        }
    })
    django.setup()
    from django.core.cache import cache

    out = {}
    cache.set_many({"user:1": {"name": "ada"}, "user:2": [1, 2], "n": 7},
                   timeout=60)
    out["set_many/get_many"] = cache.get_many(["user:1", "user:2", "n", "nope"])
    out["get default"] = cache.get("nope", "dflt")

    cache.set("hits", 0, timeout=None)

    def bump():
        for _ in range(200):
            cache.incr("hits")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["incr 4 threads x 200"] = cache.get("hits")

    for i in range(30):
        cache.set("session:%d" % i, i, timeout=60)
    cache.set("keep", 1, timeout=60)
    out["delete_pattern"] = cache.delete_pattern("session:*")
    out["after delete_pattern"] = [cache.get("session:3"), cache.get("keep")]

    cache.set("ttl", "x", timeout=60)
    ttl = cache.ttl("ttl")
    out["ttl"] = [0 < ttl <= 60, cache.ttl("no-such-key"),
                  cache.ttl("hits")]

    lock = cache.lock("job", timeout=10)
    other = cache.lock("job", timeout=10)
    out["lock"] = [lock.acquire(blocking=False),
                   other.acquire(blocking=False)]
    lock.release()
    out["lock after release"] = other.acquire(blocking=False)
    other.release()

    out["add/touch/delete"] = [cache.add("added", 1, timeout=60),
                               cache.add("added", 2, timeout=60),
                               cache.touch("added", 120),
                               cache.delete("added"),
                               cache.get("added")]
    print(json.dumps(out, sort_keys=True))


def main():
    if sys.argv[1] == "--one":
        run_one(sys.argv[2])
        return 0
    results = []
    for sock in sys.argv[1:3]:
        p = subprocess.run([sys.executable, __file__, "--one", sock],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            print("FAIL: django run on %s:\n%s" % (sock, p.stderr))
            return 1
        results.append(json.loads(p.stdout))
    tcd, plain = results
    failed = 0
    for name in sorted(plain):
        same = tcd.get(name) == plain[name]
        failed += not same
        print("| django-redis %s | %s |" % (name, "same" if same else
                                            "DIFFERENT"))
        if not same:
            print("  tiercached: %r\n  redis:      %r" % (tcd.get(name),
                                                        plain[name]))
    print("%d passed, %d failed" % (len(plain) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
