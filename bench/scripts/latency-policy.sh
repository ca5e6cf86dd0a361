#!/usr/bin/env bash
# The latency policy (read spin, idle pollers) measured the way users see
# it: request/reply 16 B, one request outstanding, with four clients —
# the Go client (gobench), async-nats, nats-py and broker-edge-bench —
# against, in one run, interleaved round by round:
#   P1 Broker Edge, idle_poll: true, read_spin: 100us  (both on)
#   P2 Broker Edge, idle_poll: false, read_spin: 100us (read spin only)
#   P3 Broker Edge, idle_poll: false, read_spin: 0s    (the defaults)
#   R15 nats-server 2.15.3, R29 nats-server 2.9.10 (skipped if absent)
# Server CPU per request is the server's utime+stime over the run (incl.
# 100 warm-up requests) / requests. Writes $OUT/results.md. From the root:
#   bash bench/scripts/latency-policy.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}
MSGS=${MSGS:-5000}
PY_MSGS=${PY_MSGS:-2000}
SIZE=${SIZE:-16}
OUT=${OUT:-target/bench-latency}
BE=${BE:-target/release/broker-edge}
R15=${R15:-target/refs/bin/nats-server-2.15.3}
R29=${R29:-/usr/sbin/nats-server}
GOBENCH=${GOBENCH:-target/tools/gobench}
BENCH=${BENCH:-target/release/broker-edge-bench}
ANATS=${ANATS:-target/release/examples/reqrep_async_nats}
TOOLS=${TOOLS:-gobench async-nats nats-py bench}
NO_BUILD=${NO_BUILD:-0}
if [[ "$NO_BUILD" != 1 ]]; then
  cargo build --release -p broker-edge -p broker-edge-bench --example reqrep_async_nats
  [[ -x "$GOBENCH" ]] || OUT="$PWD/$GOBENCH" bash ../shared/tools/gobench/build.sh
fi
rm -rf "$OUT/runs"; mkdir -p "$OUT/runs"
BASE=$(mktemp -d "${TMPDIR:-/tmp}/latency-policy.XXXXXX")
source "$(dirname "$0")/servers.sh"
trap 'stop_servers; rm -rf "$BASE"' EXIT
declare -A NAME
start() { # label name port command…
  local s=$1 name=$2; shift 2
  start_server "$s" "$@"
  NAME[$s]=$name
  printf '%s\t%s\n' "$s" "$name" >>"$OUT/runs/servers.tsv"
}
conf() { # port, broker_edge block body
  printf 'listen: 127.0.0.1:%s\nbroker_edge { %s }\n' "$1" "$2" >"$BASE/$1.conf"
  echo "$BASE/$1.conf"
}
SERVERS=(P1 P2 P3 R15)
start P1 "Broker Edge (idle_poll on, read_spin 100us)" 14501 "$BE" -c "$(conf 14501 'idle_poll: true, read_spin: "100us"')"
start P2 "Broker Edge (idle_poll off, read_spin 100us)" 14502 "$BE" -c "$(conf 14502 'idle_poll: false, read_spin: "100us"')"
start P3 "Broker Edge (idle_poll off, read_spin 0)" 14503 "$BE" -c "$(conf 14503 'idle_poll: false, read_spin: "0s"')"
start R15 "nats-server 2.15.3" 14504 "$R15" -a 127.0.0.1 -p 14504
if [[ -x "$R29" ]]; then start R29 "nats-server 2.9.10" 14505 "$R29" -a 127.0.0.1 -p 14505; SERVERS+=(R29); fi
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  for tool in $TOOLS; do
    for s in "${SERVERS[@]}"; do
      url="nats://127.0.0.1:${PORT[$s]}"
      f="$OUT/runs/r${round}_${tool}_$s"
      n=$MSGS; [[ $tool == nats-py ]] && n=$PY_MSGS
      t0=$(ticks "${PID[$s]}")
      case $tool in
        gobench) "$GOBENCH" --url "$url" --scenario reqrep --size "$SIZE" --msgs "$n" --server-pid "${PID[$s]}" >"$f.json" 2>"$f.err" ;;
        async-nats) "$ANATS" "$url" "$n" "$SIZE" >"$f.json" 2>"$f.err" ;;
        nats-py) python3 bench/scripts/reqrep_nats_py.py "$url" "$n" "$SIZE" >"$f.json" 2>"$f.err" ;;
        bench) "$BENCH" reqrep --size "$SIZE" --msgs "$n" --url "$url" --json -q >"$f.json" 2>"$f.err" ;;
      esac || echo "!!! $tool $s failed" >&2
      t1=$(ticks "${PID[$s]}")
      echo "$(( (t1 - t0) * 10000 )) $((n + 100))" >"$f.cpu"
      sleep 0.2
    done
  done
done
python3 - "$OUT/runs" <<'PY' | tee "$OUT/results.md"
import json, sys, glob, os, statistics
runs = sys.argv[1]
names = dict(l.rstrip("\n").split("\t") for l in open(os.path.join(runs, "servers.tsv")))
def pick(j, *keys):
    for k in keys:
        v = j
        for part in k.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            return v
    return None
rows = {}
for f in sorted(glob.glob(os.path.join(runs, "r*_*.json"))):
    base = os.path.basename(f)[:-5]
    _, rest = base.split("_", 1)
    tool, s = rest.rsplit("_", 1)
    text = open(f).read().strip()
    try:
        j = json.loads(text)
    except Exception:
        try:
            j = json.loads(text.splitlines()[-1])
        except Exception:
            continue
    if isinstance(j, dict) and isinstance(j.get("a"), dict):
        j = j["a"]
    us, n = open(f[:-5] + ".cpu").read().split()
    j["_cpu"] = int(us) / max(int(n), 1)
    rows.setdefault((tool, s), []).append(j)
med = lambda v: statistics.median([x for x in v if x is not None]) if any(x is not None for x in v) else float("nan")
print("| client | server | p50 µs | p99 µs | server CPU µs/request | p50 / 2.15.3 | p99 / 2.15.3 | CPU / 2.15.3 |")
print("|---|---|---|---|---|---|---|---|")
order = ["P1", "P2", "P3", "R15", "R29"]
for tool in ["gobench", "async-nats", "nats-py", "bench"]:
    ref = rows.get((tool, "R15"))
    r50 = med([pick(j, "p50_us", "latency.p50_us") for j in ref]) if ref else float("nan")
    r99 = med([pick(j, "p99_us", "latency.p99_us") for j in ref]) if ref else float("nan")
    rcpu = med([j["_cpu"] for j in ref]) if ref else float("nan")
    for s in order:
        js = rows.get((tool, s))
        if not js:
            continue
        p50 = med([pick(j, "p50_us", "latency.p50_us") for j in js])
        p99 = med([pick(j, "p99_us", "latency.p99_us") for j in js])
        cpu = med([j["_cpu"] for j in js])
        print(f"| {tool} | {names.get(s, s)} | {p50:.0f} | {p99:.0f} | {cpu:.1f} | {p50/r50:.2f} | {p99/r99:.2f} | {cpu/rcpu:.2f} |")
PY
