#!/usr/bin/env bash
# How clients should fill shards (`broker_edge { shard_fill }`), measured
# with the Go client (gobench): request/reply (N requesters, one
# responder) and publish-only (N publishers) with N = 4, 16, 64, against
# Broker Edge with shard_fill 1 (spread from the first client), 16 and 64
# (all of these clients on one shard), and nats-server 2.15.3 for scale,
# interleaved round by round in one run. Writes $OUT/results.md:
#   bash bench/scripts/shard-fill.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-target/bench-shard-fill}
BE=${BE:-target/release/broker-edge}
R15=${R15:-target/refs/bin/nats-server-2.15.3}
GOBENCH=${GOBENCH:-target/tools/gobench}
REQS=${REQS:-20000}
PUBS_MSGS=${PUBS_MSGS:-2000000}
rm -rf "$OUT/runs"; mkdir -p "$OUT/runs"
BASE=$(mktemp -d "${TMPDIR:-/tmp}/shard-fill.XXXXXX")
source "$(dirname "$0")/servers.sh"
trap 'stop_servers; rm -rf "$BASE"' EXIT
for f in 1 16 64; do
  printf 'listen: 127.0.0.1:%s\nbroker_edge { shard_fill: %s }\n' "$((14600 + f))" "$f" >"$BASE/f$f.conf"
  start_server "fill$f" "$((14600 + f))" "$BE" -c "$BASE/f$f.conf"
done
start_server R15 14699 "$R15" -a 127.0.0.1 -p 14699
SERVERS=(fill1 fill16 fill64 R15)
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  for n in 4 16 64; do
    for scen in reqrep pub; do
      for s in "${SERVERS[@]}"; do
        msgs=$REQS; [[ $scen == pub ]] && msgs=$PUBS_MSGS
        "$GOBENCH" --url "nats://127.0.0.1:${PORT[$s]}" --scenario "$scen" --pubs "$n" --size 16 \
          --msgs "$msgs" --server-pid "${PID[$s]}" >"$OUT/runs/r${round}_${scen}_${n}_$s.json" 2>/dev/null \
          || echo "!!! $scen $n $s failed" >&2
        sleep 0.2
      done
    done
  done
done
python3 - "$OUT/runs" <<'PY' | tee "$OUT/results.md"
import json, sys, glob, os, statistics
rows = {}
for f in glob.glob(os.path.join(sys.argv[1], "r*.json")):
    _, scen, n, s = os.path.basename(f)[:-5].split("_")
    try:
        j = json.loads(open(f).read().strip().splitlines()[-1])
    except Exception:
        continue
    rows.setdefault((scen, int(n), s), []).append(j)
med = lambda v: statistics.median([x for x in v if x is not None]) if any(x is not None for x in v) else float("nan")
print("| scenario | clients | server | msgs/s (median) | p50 µs | p99 µs | server CPU µs/msg |")
print("|---|---|---|---|---|---|---|")
for (scen, n, s) in sorted(rows, key=lambda k: (k[0], k[1], ["fill1", "fill16", "fill64", "R15"].index(k[2]))):
    js = rows[(scen, n, s)]
    name = {"R15": "nats-server 2.15.3"}.get(s, "Broker Edge shard_fill " + s[4:])
    print(f"| {scen} | {n} | {name} | {med([j.get('msgs_per_sec') for j in js]):,.0f} | "
          f"{med([j.get('p50_us') for j in js]):.0f} | {med([j.get('p99_us') for j in js]):.0f} | "
          f"{med([j.get('server_cpu_us_per_msg') for j in js]):.2f} |")
PY
