#!/usr/bin/env bash
# How seatrush's keys spread over a Redis Cluster's masters. All of a schedule's keys share
# the hash tag {s:<id>} and so one slot (ARCHITECTURE.md, "Invariants"); a user's money lives in one of 64 wallet
# buckets, {w:<n>}. Per master: its slots, its keys (DBSIZE), and the tags it holds with
# their slots and key counts; the untagged keys (the schedule set, the token index) last.
#   scripts/cluster-keys.sh [port of any node]   (6391: the dev stack's application cluster)
set -euo pipefail
port=${1:-6391}

# "host:port slot-ranges" per master, from CLUSTER NODES.
redis-cli -p "$port" cluster nodes | awk '$3 ~ /master/ {
    split($2, a, "@"); ranges = ""
    for (i = 9; i <= NF; i++) ranges = ranges (ranges ? "," : "") $i
    print a[1], ranges }' | sort -t: -k2 -n |
while read -r node ranges; do
  host=${node%:*} p=${node#*:}
  printf '%s  slots %s  keys %s\n' "$node" "$ranges" "$(redis-cli -h "$host" -p "$p" dbsize)"
  # Keys per hash tag (SCAN, so a busy node is not blocked).
  redis-cli -h "$host" -p "$p" --scan |
    sed -n 's/^\({[^}]*}\).*/\1/p; /^[^{]/s/.*/untagged/p' | sort | uniq -c |
    while read -r count tag; do
      if [ "$tag" = untagged ]; then echo "untagged $count"; continue; fi
      echo "$tag $count $(redis-cli -h "$host" -p "$p" cluster keyslot "$tag")"
    done | awk '
      /^\{s:/     { schedules = schedules sprintf("  %s slot %s: %d keys\n", $1, $3, $2) }
      /^\{w:/     { buckets++; wallet += $2 }
      /^untagged/ { untagged = $2 }
      END {
        printf "%s", schedules
        if (buckets) printf "  wallet buckets: %d of 64, %d keys\n", buckets, wallet
        if (untagged) printf "  untagged: %d keys\n", untagged
      }'
done
