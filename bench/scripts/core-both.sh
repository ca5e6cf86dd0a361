#!/usr/bin/env bash
# Core messaging with both generators against both references, in one run:
#   BE  = Broker Edge (defaults)            target/release/broker-edge
#   R15 = nats-server 2.15.3                target/refs/bin/nats-server-2.15.3
#   R29 = nats-server 2.9.10                /usr/sbin/nats-server (skipped if absent)
# Each round runs every scenario with broker-edge-bench and with the
# Go-client gobench against each server in turn (interleaved), then the
# table gives medians and Broker Edge's ratios against each reference,
# per generator: a result that holds for one generator only shows as such.
#   bash bench/scripts/core-both.sh          (ROUNDS=3 by default)
set -euo pipefail
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-target/bench-core-both}
BE=${BE:-target/release/broker-edge}
R15=${R15:-target/refs/bin/nats-server-2.15.3}
R29=${R29:-/usr/sbin/nats-server}
GOBENCH=${GOBENCH:-target/tools/gobench}
BENCH=${BENCH:-target/release/broker-edge-bench}
ONLY=${ONLY:-}
rm -rf "$OUT/runs"; mkdir -p "$OUT/runs"
source "$(dirname "$0")/servers.sh"
start_server BE 14701 "$BE" -a 127.0.0.1 -p 14701
start_server R15 14702 "$R15" -a 127.0.0.1 -p 14702
SERVERS=(BE R15)
if [[ -x "$R29" ]]; then start_server R29 14703 "$R29" -a 127.0.0.1 -p 14703; SERVERS+=(R29); fi
# name, scenario, size, subs, msgs (bench), msgs (gobench)
rows=(
  "pubsub-16  pubsub 16  1 3000000 2000000"
  "pubsub-128 pubsub 128 1 2000000 1000000"
  "fanout-16  fanout 16  4 1000000 500000"
  "fanout-128 fanout 128 4 800000  400000"
  "queue-16   queue  16  4 2000000 1000000"
  "queue-128  queue  128 4 1500000 800000"
  "reqrep-16  reqrep 16  1 5000    5000"
)
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  for row in "${rows[@]}"; do
    read -r name scen size subs bmsgs gmsgs <<<"$row"
    if [[ -n "$ONLY" && "$name" != $ONLY ]]; then continue; fi
    for s in "${SERVERS[@]}"; do
      url="nats://127.0.0.1:${PORT[$s]}"
      sub=(); [[ $scen == fanout || $scen == queue ]] && sub=(--subs "$subs")
      timeout 120 "$BENCH" "$scen" --size "$size" "${sub[@]}" --msgs "$bmsgs" --url "$url" \
        --pid-a "${PID[$s]}" --json -q >"$OUT/runs/r${round}_${name}_bench_$s.json" 2>/dev/null \
        || echo "!!! bench $name $s" >&2
      sleep 0.2
      timeout 120 "$GOBENCH" --url "$url" --scenario "$scen" --size "$size" --msgs "$gmsgs" \
        --server-pid "${PID[$s]}" >"$OUT/runs/r${round}_${name}_gobench_$s.json" 2>/dev/null \
        || echo "!!! gobench $name $s" >&2
      sleep 0.2
    done
  done
done
python3 - "$OUT/runs" <<'PY' | tee "$OUT/results.md"
import json, sys, glob, os, statistics
rows = {}
for f in glob.glob(os.path.join(sys.argv[1], "r*.json")):
    _, name, tool, s = os.path.basename(f)[:-5].split("_")
    text = open(f).read().strip()
    try:
        j = json.loads(text)
    except Exception:
        try:
            j = json.loads(text.splitlines()[-1])
        except Exception:
            continue
    if isinstance(j.get("a"), dict):
        j = j["a"]
    lat = j.get("latency") or {}
    rows.setdefault((name, tool, s), []).append({
        "rate": j.get("msgs_per_sec") or j.get("deliveries_per_s") or j.get("msgs_per_s"),
        "cpu": j.get("server_cpu_us_per_msg") or j.get("server_us_per_msg"),
        "p50": j.get("p50_us") or lat.get("p50_us"),
        "p99": j.get("p99_us") or lat.get("p99_us"),
    })
def med(v):
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else float("nan")
print("| scenario | generator | BE msgs/s | BE srv µs/msg | vs 2.15.3: msgs/s, CPU | vs 2.9.10: msgs/s, CPU | reqrep p50/p99 µs BE · 2.15.3 · 2.9.10 |")
print("|---|---|---|---|---|---|---|")
names = sorted({k[0] for k in rows}, key=lambda n: (n.split("-")[0] == "reqrep", n))
for name in names:
    for tool in ["bench", "gobench"]:
        m = {s: rows.get((name, tool, s), []) for s in ["BE", "R15", "R29"]}
        g = lambda s, k: med([x[k] for x in m[s]])
        rate, cpu = g("BE", "rate"), g("BE", "cpu")
        def vs(s):
            r, c = g(s, "rate"), g(s, "cpu")
            return f"{rate / r:.2f}×, {cpu / c:.2f}×" if r == r and c == c and r and c else "–"
        lat = " · ".join(f"{g(s, 'p50'):.0f}/{g(s, 'p99'):.0f}" for s in ["BE", "R15", "R29"]) if name.startswith("reqrep") else ""
        gen = "gobench (Go client)" if tool == "gobench" else "broker-edge-bench"
        print(f"| {name} | {gen} | {rate:,.0f} | {cpu:.3f} | {vs('R15')} | {vs('R29')} | {lat} |")
PY
