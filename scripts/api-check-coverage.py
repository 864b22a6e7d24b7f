#!/usr/bin/env python3
"""How far scripts/api-check.sh's generated requests got, per operation of the document.

usage: api-check-coverage.py <openapi.json> <requests.har> [fewest requests]

Prints, for every operation, how many requests it got and how many of each status, and
exits 1 when an operation that names a `security` requirement got no answer that passed its
auth checks (one other than 401 or 403), so a fuzz run that only ever meets the front door
cannot pass, and when the run made fewer requests than asked. (The operations without one include GET /openapi.json, which schemathesis reads
to begin with and then leaves out.)
"""

import collections
import json
import re
import sys
from urllib.parse import urlparse

AUTH_REFUSALS = {401, 403}


def operations(doc):
    """[(method, path regex, "METHOD /template", secured)] for every operation of the
    document."""
    ops = []
    for template, methods in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method in methods:
            if method in ("get", "put", "post", "delete", "patch"):
                secured = bool(methods[method].get("security", doc.get("security")))
                ops.append((method.upper(), pattern, f"{method.upper()} {template}", secured))
    return ops


def main():
    doc = json.load(open(sys.argv[1]))
    entries = json.load(open(sys.argv[2]))["log"]["entries"]
    ops = operations(doc)
    statuses = {label: collections.Counter() for _, _, label, _ in ops}
    secured = {label for _, _, label, is_secured in ops if is_secured}
    for entry in entries:
        method = entry["request"]["method"]
        path = urlparse(entry["request"]["url"]).path
        for op_method, pattern, label, _ in ops:
            if method == op_method and pattern.match(path):
                statuses[label][entry["response"]["status"]] += 1
                break
    failed = []
    print(f"{len(entries)} requests; per operation: requests, then the count of each status")
    for label, counts in statuses.items():
        total = sum(counts.values())
        past_auth = sum(n for status, n in counts.items() if status not in AUTH_REFUSALS)
        shown = " ".join(f"{status}:{n}" for status, n in sorted(counts.items()))
        print(f"  {label}: {total}  {shown}")
        if label in secured and past_auth == 0:
            failed.append(label)
    fewest = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if failed:
        print("never answered past the auth checks: " + ", ".join(failed))
    if len(entries) < fewest:
        print(f"{len(entries)} requests, fewer than the {fewest} asked for")
    return 1 if failed or len(entries) < fewest else 0


if __name__ == "__main__":
    sys.exit(main())
