#!/usr/bin/env python3
"""RFC 6238 TOTP codes and free ports for run.sh (standard library only)."""

import base64
import hashlib
import hmac
import socket
import struct
import sys
import time

STEP = 30


def code_at(secret_b32: str, step: int, digits: int = 6) -> str:
    """The TOTP code of SHA-1 / 30 s / `digits` digits for a time step (RFC 4226 truncation)."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def now_step() -> int:
    return int(time.time()) // STEP


def fresh(secret: str, last_step: int, skew: int) -> tuple[str, int]:
    """A code the server has not accepted yet: this step's, or, when the step of the last accepted
    code is this one or later, the next step's (still inside the accepted skew). Sleeps to the next
    step only when even that is out of reach."""
    while True:
        now = now_step()
        step = max(now, last_step + 1)
        # With no skew, a code read in the step's last second could expire on its way.
        if step <= now + skew and (skew > 0 or time.time() % STEP < STEP - 1):
            return code_at(secret, step), step
        time.sleep(STEP - time.time() % STEP + 0.05)


def wrong(secret: str, skew: int) -> str:
    """Six digits that are no valid code anywhere near now."""
    now = now_step()
    near = {code_at(secret, s) for s in range(now - skew - 2, now + skew + 3)}
    candidate = int(code_at(secret, now))
    while str(candidate).zfill(6) in near:
        candidate = (candidate + 111_111) % 1_000_000
    return str(candidate).zfill(6)


def free_port(kind: str) -> int:
    """A 127.0.0.1 port that is free for TCP and UDP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # A RADIUS site also uses port+1 for accounting in many setups; keep both free.
        try:
            for p in (port, port + 1):
                for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, t) as s:
                        s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise SystemExit("no free port on 127.0.0.1")


def main(argv: list[str]) -> int:
    usage = (
        "usage: totp.py code SECRET [STEP] | fresh SECRET LAST_STEP SKEW | wrong SECRET SKEW"
        " | step | port tcp|udp"
    )
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "code" and len(args) in (1, 2):
        print(code_at(args[0], int(args[1]) if len(args) == 2 else now_step()))
    elif cmd == "fresh" and len(args) == 3:
        code, step = fresh(args[0], int(args[1]), int(args[2]))
        print(code, step)
    elif cmd == "wrong" and len(args) == 2:
        print(wrong(args[0], int(args[1])))
    elif cmd == "step" and not args:
        print(now_step())
    elif cmd == "port" and len(args) == 1 and args[0] in ("tcp", "udp"):
        print(free_port(args[0]))
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
