#!/usr/bin/env python3
"""A /validate/check client that speaks as privacyIDEA's PAM and FreeRADIUS plugins do (stdlib only).

It POSTs user, pass and realm form-encoded (or as JSON with --json), optionally with an API key in
one of the headers privacyIDEA accepts, reads result.value and detail.message, and exits 0 when the
answer is the one expected, 1 otherwise, printing one line either way. --radiuscheck asks
/validate/radiuscheck instead, whose whole answer is its status: 204 accept, 400 reject, no body.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def check(args: argparse.Namespace) -> tuple[int, str, dict | None]:
    fields = {"user": args.user, "pass": args.password}
    if args.realm is not None:
        fields["realm"] = args.realm
    if args.json:
        body = json.dumps(fields).encode()
        ctype = "application/json"
    else:
        body = urllib.parse.urlencode(fields).encode()
        ctype = "application/x-www-form-urlencoded"
    headers = {"Content-Type": ctype, "Accept": "application/json", "User-Agent": "privacyidea-pam/e2e"}
    if args.key:
        name, value = {
            "plain": ("Authorization", args.key),
            "bearer": ("Authorization", f"Bearer {args.key}"),
            "pi": ("PI-Authorization", args.key),
        }[args.header]
        headers[name] = value
    url = args.url.rstrip("/") + ("/validate/radiuscheck" if args.radiuscheck else "/validate/check")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    return status, text, doc


def part(doc: object, key: str) -> dict:
    """doc[key] when both are JSON objects, else {} (an error body may carry "detail" as text)."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def verdict(args: argparse.Namespace, status: int, text: str, doc: dict | None) -> list[str]:
    """What is wrong with the answer, given what was expected (empty: all as expected)."""
    if args.expect == "denied":
        # The caller may not ask at all: no JSON answer with a verdict.
        return [] if status in (401, 403) else [f"expected 401 or 403 for a caller without a key, got {status}: {text[:200]}"]
    if args.radiuscheck:
        want = 204 if args.expect == "accept" else 400
        if args.expect == "notaccept":
            return [] if status != 204 else ["expected no accept, got 204"]
        if status != want or text:
            return [f"expected {want} with no body, got {status} with {len(text)} bytes: {text[:200]}"]
        return []
    if args.expect == "notaccept":
        # A privacyIDEA-shaped answer that is no accept: a reject, or an error such as privacyIDEA's
        # for an unknown realm ({"result": {"status": false, "error": ...}}, 400).
        if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
            return [f"expected a JSON-RPC answer, got {status}: {text[:200]}"]
        if part(doc, "result").get("value") is True:
            return ["expected no accept, got result.value true"]
        return []
    if status != 200 or not isinstance(doc, dict):
        return [f"expected 200 with a JSON body, got {status}: {text[:200]}"]
    problems = []
    result = part(doc, "result")
    detail = part(doc, "detail")
    if doc.get("jsonrpc") != "2.0":
        problems.append(f"jsonrpc is {doc.get('jsonrpc')!r}, not \"2.0\"")
    if result.get("status") is not True:
        problems.append(f"result.status is {result.get('status')!r}, not true")
    accepted = result.get("value") is True
    if args.expect == "accept":
        if not accepted or result.get("authentication") != "ACCEPT":
            problems.append(f"expected accept, got value={result.get('value')!r} authentication={result.get('authentication')!r}")
        if detail.get("type") != "totp" or not detail.get("serial"):
            problems.append(f"an accept names the token: detail.type {detail.get('type')!r}, detail.serial {detail.get('serial')!r}")
    else:
        if result.get("value") is not False or result.get("authentication") != "REJECT":
            problems.append(f"expected reject, got value={result.get('value')!r} authentication={result.get('authentication')!r}")
    if args.message is not None and detail.get("message") != args.message:
        problems.append(f"detail.message is {detail.get('message')!r}, expected {args.message!r}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the mfadmin server, e.g. http://127.0.0.1:7070")
    p.add_argument("--user", required=True)
    p.add_argument("--pass", dest="password", required=True, help="the one-time code (or password+code)")
    p.add_argument("--realm", help="the org name (privacyIDEA's realm)")
    p.add_argument("--key", help="API key; omitted: no Authorization header")
    p.add_argument("--header", choices=["plain", "bearer", "pi"], default="plain",
                   help="send the key as 'Authorization: KEY', 'Authorization: Bearer KEY' or 'PI-Authorization: KEY'")
    p.add_argument("--json", action="store_true", help="send a JSON body instead of a form")
    p.add_argument("--radiuscheck", action="store_true", help="ask /validate/radiuscheck (204/400, no body)")
    p.add_argument("--expect", choices=["accept", "reject", "notaccept", "denied"], required=True,
                   help="accept or reject (a 200 JSON verdict), notaccept (anything but an accept), denied (401/403)")
    p.add_argument("--message", help="the detail.message the answer must carry")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    try:
        status, text, doc = check(args)
    except (urllib.error.URLError, OSError) as e:
        print(f"cannot reach {args.url}: {e}")
        return 1
    problems = verdict(args, status, text, doc)
    message = part(doc, "detail").get("message")
    if problems:
        print("; ".join(problems))
        return 1
    print(f"{status} {args.expect}" + (f" ({message})" if message else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
