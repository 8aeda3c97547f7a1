#!/usr/bin/env python3
"""A user CSV as an HR or directory export gives it: `gen-users-csv.py COUNT [SEED] [PREFIX] > users.csv`.

Names are drawn from the demo's name lists (assets/), each user name made unique with a number
as directories do (jane.smith, jane.smith2, ...); orgs Acme, Globex and Initech (6:3:1), roles
mostly member. PREFIX (default empty) is put before every user name and email, so that a second
file does not collide with the first."""
import os, random, sys

count = int(sys.argv[1])
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
prefix = sys.argv[3] if len(sys.argv) > 3 else ""
here = os.path.dirname(os.path.abspath(__file__))
first = [l.strip() for l in open(os.path.join(here, "../assets/demo_first_names.txt")) if l.strip()]
last = [l.strip() for l in open(os.path.join(here, "../assets/demo_last_names.txt")) if l.strip()]
rng = random.Random(seed)
orgs = ["Acme"] * 6 + ["Globex"] * 3 + ["Initech"]
seen = {}
out = sys.stdout
out.write("username,email,display_name,role,org\n")
for _ in range(count):
    f, l = rng.choice(first), rng.choice(last)
    base = f"{prefix}{f.lower()}.{l.lower()}"
    n = seen.get(base, 0) + 1
    seen[base] = n
    name = base if n == 1 else f"{base}{n}"
    org = rng.choice(orgs)
    r = rng.randrange(1000)
    role = "admin" if r < 20 else "helpdesk" if r < 70 else "auditor" if r < 90 else "member"
    out.write(f"{name},{name}@{org.lower()}.example,{f} {l},{role},{org}\n")
