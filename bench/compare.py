#!/usr/bin/env python3
"""One load client for mfadmin and privacyIDEA, side by side (bench/compare-privacyidea.sh runs it).

Standard library only (http.client + threads), 127.0.0.1 only, every phase a fixed number of
requests with a 60 s socket timeout. The privacyIDEA side issues exactly the requests of the peer's
pi_load.py (list = GET /token/?pagesize=50&page=N, reset = DELETE /token/?user=..&realm=mfa, bulk =
one DELETE /token/ {"serials": [...]}); the mfadmin side issues the equivalent native calls (list =
GET /api/v1/users?limit=50 at page N by cursor, reset = POST /api/v1/users/{id}/mfa/reset, bulk =
one POST /api/v1/mfa/reset {"ids": [...]}). Because one Python client drives both, each figure is
bounded by this client too (one request in flight per thread, GIL): mfadmin's figures here are
the client's ceiling, not the server's; bench/run.sh measures mfadmin with wrk.

Usage:
  compare.py seed-mfadmin MFADMIN FIRST LAST      enroll userFIRST..userLAST (already imported) via the CLI
  compare.py SYSTEM PHASE args...                 SYSTEM: mfadmin (--base, TOKEN env) or pi
Phases: list N C | reset FIRST LAST C | bulk FIRST LAST
Prints one JSON line per phase.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

PI_BASE, PI_ADMIN, PI_PASSWORD, PI_REALM = "http://127.0.0.1:5001", "admin", "AdminPass123!", "mfa"
MF_BASE = os.environ.get("MF_BASE", "http://127.0.0.1:7392")


def uname(i):
    return f"user{i:05d}"


class Client:
    def __init__(self, base, auth=None):
        u = urllib.parse.urlsplit(base)
        assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        self.auth = auth

    def req(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return r.status, raw
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise


def run(system, name, items, fn, conc, make_client, ok, extra=None):
    """fn(client, item) for every item with `conc` threads; time each call."""
    lat, errs, lock = [], [], threading.Lock()
    it = iter(list(items))

    def worker():
        c = make_client()
        while True:
            with lock:
                try:
                    item = next(it)
                except StopIteration:
                    return
            t0 = time.perf_counter()
            try:
                st, raw = fn(c, item)
                good = ok(st, raw)
            except Exception as e:  # noqa
                st, raw, good = -1, str(e).encode(), False
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if not good:
                    errs.append((str(item)[:60], st, raw[:200].decode("utf-8", "replace")))

    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    n = len(lat)
    lat.sort()
    q = lambda p: round(lat[min(n - 1, int(p * n))] * 1000, 2) if n else None  # noqa
    res = {"system": system, "phase": name, "requests": n, "concurrency": conc, "wall_s": round(wall, 3),
           "req_per_s": round(n / wall, 1) if wall else None,
           "mean_ms": round(statistics.mean(lat) * 1000, 2) if n else None,
           "p50_ms": q(0.50), "p99_ms": q(0.99), "errors": len(errs)}
    if extra:
        res.update(extra)
    if errs:
        res["first_error"] = errs[0]
    print(json.dumps(res), flush=True)
    return res


# ---------------------------------------------------------------- privacyIDEA (as pi_load.py)
def pi_ok(st, raw):
    try:
        return st == 200 and json.loads(raw)["result"]["status"] is True
    except Exception:
        return False


def pi_token():
    st, raw = Client(PI_BASE).req("POST", "/auth", {"username": PI_ADMIN, "password": PI_PASSWORD})
    assert st == 200, raw[:300]
    return json.loads(raw)["result"]["value"]["token"]


def pi_phase(phase, a):
    token = pi_token()
    mk = lambda: Client(PI_BASE, token)  # noqa
    rnd = random.Random(42)
    if phase == "list":
        n, conc = a
        pages = [rnd.randint(1, 40) for _ in range(n)]
        run("privacyidea", "list_page_50", pages, lambda c, p: c.req("GET", f"/token/?pagesize=50&page={p}&sortby=serial"),
            conc, mk, pi_ok)
    elif phase == "reset":
        first, last, conc = a
        run("privacyidea", f"reset_single_c{conc}", range(first, last + 1),
            lambda c, i: c.req("DELETE", f"/token/?user={uname(i)}&realm={PI_REALM}"), conc, mk, pi_ok)
    elif phase == "bulk":
        first, last = a
        have, page, c = {}, 1, mk()
        while page:
            st, raw = c.req("GET", f"/token/?pagesize=1000&page={page}")
            v = json.loads(raw)["result"]["value"]
            for t in v["tokens"]:
                if t.get("username"):
                    have.setdefault(t["username"], []).append(t["serial"])
            page = v["next"]
        serials = [s for i in range(first, last + 1) for s in have.get(uname(i), [])]
        run("privacyidea", f"bulk_reset_{last - first + 1}", [serials],
            lambda c, s: c.req("DELETE", "/token/", {"serials": s}), 1, mk, pi_ok, {"serials": len(serials)})


# ---------------------------------------------------------------- mfadmin
def mf_ok(st, raw):
    return st == 200


def mf_ids():
    """{username: id} of every user, walking the pages once."""
    c, out, cursor = Client(MF_BASE, "Bearer " + os.environ["TOKEN"]), {}, None
    while True:
        path = "/api/v1/users?limit=500" + (f"&cursor={cursor}" if cursor else "")
        st, raw = c.req("GET", path)
        page = json.loads(raw)
        for u in page["users"]:
            out[u["username"]] = u["id"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def mf_phase(phase, a):
    auth = "Bearer " + os.environ["TOKEN"]
    mk = lambda: Client(MF_BASE, auth)  # noqa
    rnd = random.Random(42)
    if phase == "list":
        n, conc = a
        # The cursor of each of the first 40 pages, as privacyIDEA's page=1..40.
        cursors, cursor, c = [None], None, mk()
        for _ in range(39):
            page = json.loads(c.req("GET", "/api/v1/users?limit=50" + (f"&cursor={cursor}" if cursor else ""))[1])
            cursor = page["next_cursor"]
            cursors.append(cursor)
        pages = [cursors[rnd.randint(1, 40) - 1] for _ in range(n)]
        run("mfadmin", "list_page_50", pages,
            lambda c, cur: c.req("GET", "/api/v1/users?limit=50" + (f"&cursor={cur}" if cur else "")), conc, mk, mf_ok)
    elif phase == "reset":
        first, last, conc = a
        ids = mf_ids()
        run("mfadmin", f"reset_single_c{conc}", [ids[uname(i)] for i in range(first, last + 1)],
            lambda c, i: c.req("POST", f"/api/v1/users/{i}/mfa/reset", {"reason": "compare"}), conc, mk, mf_ok)
    elif phase == "bulk":
        first, last = a
        ids = mf_ids()
        batch = [ids[uname(i)] for i in range(first, last + 1)]

        def bulk_ok(st, raw):
            return st == 200 and json.loads(raw)["summary"]["reset"] == len(batch)
        run("mfadmin", f"bulk_reset_{last - first + 1}", [batch],
            lambda c, b: c.req("POST", "/api/v1/mfa/reset", {"ids": b, "reason": "compare"}), 1, mk, bulk_ok,
            {"ids": len(batch)})


def totp_now(secret_b32):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    o = mac[-1] & 15
    return f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def seed_mfadmin(mfadmin, first, last):
    """Enroll (begin + confirm with a code computed here) every imported user, as the console."""
    t0 = time.perf_counter()
    for i in range(first, last + 1):
        out = subprocess.run([mfadmin, "mfa", "enroll", uname(i)], capture_output=True, text=True, check=True).stdout
        secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("Secret:"))
        subprocess.run([mfadmin, "mfa", "confirm", uname(i), totp_now(secret)], capture_output=True, check=True)
    print(json.dumps({"system": "mfadmin", "phase": f"seed_enroll_totp[{first}-{last}]",
                      "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)


def main(argv):
    if argv[0] == "seed-mfadmin":
        seed_mfadmin(argv[1], int(argv[2]), int(argv[3]))
        return
    system, phase, a = argv[0], argv[1], [int(x) for x in argv[2:]]
    (pi_phase if system == "pi" else mf_phase)(phase, a)


if __name__ == "__main__":
    main(sys.argv[1:] or sys.exit(__doc__))
