#!/usr/bin/env python3
"""Filters as admins and scripts type them: `name-fragments.py USERS_CSV COUNT [SEED] > fragments`.

Each line is a different piece (2 to 6 characters) of a real user's user name, display name or
email from USERS_CSV (as gen-users-csv.py writes it), lower-cased as the server compares them and
URL-encoded, so that a load run asks a filter never asked before on every request until the
file runs out. A piece is cut at a random place, as a person types the start or the middle of a
name; a third are the start of a field (a prefix), the rest anywhere in it."""
import random, sys, urllib.parse

path, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
rows = []
with open(path) as f:
    header = f.readline().strip().split(",")
    name, email, display = header.index("username"), header.index("email"), header.index("display_name")
    for line in f:
        cols = line.rstrip("\n").split(",")
        rows.append((cols[name], cols[display], cols[email]))
seen = set()
out = []
tries = 0
while len(out) < count and tries < count * 50:
    tries += 1
    field = rng.choice(rng.choice(rows)).lower()
    length = rng.randint(2, 6)
    if len(field) < length:
        continue
    start = 0 if rng.random() < 1 / 3 else rng.randrange(len(field) - length + 1)
    piece = field[start:start + length].strip()
    if len(piece) < 2 or piece in seen:
        continue
    seen.add(piece)
    out.append(urllib.parse.quote(piece, safe=""))
sys.stdout.write("\n".join(out) + "\n")
if len(out) < count:
    print(f"only {len(out)} different pieces in {path}", file=sys.stderr)
