#!/usr/bin/env bash
# Consumers and KV side by side in one command: starts
#   A = Broker Edge            target/release/broker-edge -js -sd <tmp>/a
#   B = nats-server 2.15.3     target/refs/bin/nats-server-2.15.3 -js -sd <tmp>/b
#   C = nats-server 2.9.10     /usr/sbin/nats-server -js -sd <tmp>/c  (skipped if absent)
#   D = Broker Edge with jetstream { sync_interval: 2m } (the reference's promise)
# and runs ROUNDS interleaved rounds (A D B C A D B C …) of js-consume
# (durable pull, fetch 100, an ack per message), kv-put and kv-get (sync,
# 1000 keys, history 1, direct get) with both generators: broker-edge-bench
# and the Go-client gobench.
# The table goes to $OUT/results.md. Run from the repository root:
#   bash bench/scripts/consumer-matrix.sh
#   CONSUME_MSGS=20000 KV_OPS=2000 ROUNDS=1 bash bench/scripts/consumer-matrix.sh   # quick pass
set -euo pipefail

ROUNDS=${ROUNDS:-3}
CONSUME_MSGS=${CONSUME_MSGS:-200000}
KV_OPS=${KV_OPS:-20000}
SIZE=${SIZE:-128}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
OUT=${OUT:-target/bench-consumers}
STORE_BASE=${STORE_BASE:-${TMPDIR:-/tmp}}
A_PORT=${A_PORT:-14481}
B_PORT=${B_PORT:-14482}
C_PORT=${C_PORT:-14483}
D_PORT=${D_PORT:-14484}
A_BIN=${A_BIN:-target/release/broker-edge}
B_BIN=${B_BIN:-target/refs/bin/nats-server-2.15.3}
C_BIN=${C_BIN:-/usr/sbin/nats-server}
GOBENCH=${GOBENCH:-target/tools/gobench}
BENCH=${BENCH:-target/release/broker-edge-bench}
TOOLS=${TOOLS:-bench gobench}
GOBENCH_SRC=${GOBENCH_SRC:-../shared/tools/gobench}
NO_BUILD=${NO_BUILD:-0}

if [[ "$NO_BUILD" != 1 ]]; then
  cargo build --release -p broker-edge -p broker-edge-bench
  [[ -x "$GOBENCH" ]] || OUT="$PWD/$GOBENCH" bash "$GOBENCH_SRC/build.sh"
fi
for b in "$A_BIN" "$B_BIN" "$GOBENCH" "$BENCH"; do
  [[ -x "$b" ]] || { echo "missing $b (scripts/install-refs, $GOBENCH_SRC/build.sh)" >&2; exit 1; }
done

rm -rf "$OUT/runs"
mkdir -p "$OUT/runs"
BASE=$(mktemp -d "$STORE_BASE/consumer-matrix.XXXXXX")
declare -A PID PORT NAME
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$BASE"
}
trap cleanup EXIT

start() { # label name port binary [config file]
  local s=$1 name=$2 port=$3 bin=$4 conf=${5:-}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: pick another with ${s}_PORT=…" >&2
    exit 1
  fi
  mkdir -p "$BASE/$s"
  if [[ -n $conf ]]; then
    "$bin" -c "$conf" >"$OUT/server-$s.log" 2>&1 &
  else
    "$bin" -a 127.0.0.1 -p "$port" -js -sd "$BASE/$s" >"$OUT/server-$s.log" 2>&1 &
  fi
  PID[$s]=$!
  PIDS+=("$!")
  PORT[$s]=$port
  NAME[$s]=$name
  for _ in $(seq 100); do
    if kill -0 "${PID[$s]}" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\t%s\n' "$s" "$name" >>"$OUT/runs/servers.tsv"
      return 0
    fi
    kill -0 "${PID[$s]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start on port $port (see $OUT/server-$s.log)" >&2
  exit 1
}

SERVERS=(A D B)
start A "Broker Edge" "$A_PORT" "$A_BIN"
cat >"$BASE/d.conf" <<CONF
listen: 127.0.0.1:$D_PORT
jetstream { store_dir: "$BASE/D", sync_interval: 2m }
CONF
start D "Broker Edge, sync_interval 2m" "$D_PORT" "$A_BIN" "$BASE/d.conf"
start B "nats-server 2.15.3" "$B_PORT" "$B_BIN"
if [[ -x "$C_BIN" ]]; then
  start C "nats-server 2.9.10" "$C_PORT" "$C_BIN"
  SERVERS+=(C)
fi

run() { # file, command…
  local f=$1
  shift
  echo "$*" >>"$OUT/runs/commands.txt"
  timeout "$RUN_TIMEOUT" "$@" >"$f.json" 2>"$f.err" || echo "!!! failed: $* (see $f.err)" >&2
}

cases=(
  "js-consume $CONSUME_MSGS"
  "kv-put $KV_OPS"
  "kv-get $KV_OPS"
)
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  for c in "${cases[@]}"; do
    read -r scen n <<<"$c"
    for tool in $TOOLS; do
      for s in "${SERVERS[@]}"; do
        echo "    $scen $tool $s" >&2
        url="nats://127.0.0.1:${PORT[$s]}"
        f="$OUT/runs/r${round}_${scen}_${tool}_$s"
        if [[ $tool == bench ]]; then
          run "$f" "$BENCH" "$scen" --size "$SIZE" --msgs "$n" --url "$url" --pid-a "${PID[$s]}" --json -q
        else
          run "$f" "$GOBENCH" --url "$url" --scenario "$scen" --size "$SIZE" --msgs "$n" \
            --server-pid "${PID[$s]}" --label "$s"
          "$GOBENCH" --url "$url" --scenario cleanup >/dev/null 2>&1 || true
        fi
        sleep 0.3
      done
    done
  done
done

python3 - "$OUT/runs" <<'PY' | tee "$OUT/results.md"
import json, sys, glob, os, statistics
runs = sys.argv[1]
names = dict(l.rstrip("\n").split("\t") for l in open(os.path.join(runs, "servers.tsv")))
rows = {}
def pick(j, *keys):
    # Both generators' JSON: gobench is flat, broker-edge-bench nests.
    for k in keys:
        v = j
        for part in k.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            return v
    return None
for f in sorted(glob.glob(os.path.join(runs, "r*_*.json"))):
    base = os.path.basename(f)[:-5]
    _, rest = base.split("_", 1)
    scen, tool, s = rest.rsplit("_", 2)
    text = open(f).read().strip()
    try:
        j = json.loads(text)
    except Exception:
        try:
            j = json.loads(text.splitlines()[-1])
        except Exception:
            continue
    if isinstance(j, dict) and "a" in j and isinstance(j["a"], dict):
        j = j["a"]
    rows.setdefault((scen, tool, s), []).append(j)
def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")
print("| scenario | generator | server | ops/s (median) | p50 µs | p99 µs | server CPU µs/op |")
print("|---|---|---|---|---|---|---|")
for key in sorted(rows):
    scen, tool, s = key
    js = rows[key]
    rate = med([pick(j, "msgs_per_sec", "msgs_per_s") for j in js])
    p50 = med([pick(j, "p50_us", "latency.p50_us") for j in js])
    p99 = med([pick(j, "p99_us", "latency.p99_us") for j in js])
    cpu = med([pick(j, "server_cpu_us_per_msg", "server_us_per_msg") for j in js])
    gen = "gobench (Go client)" if tool == "gobench" else "broker-edge-bench"
    print(f"| {scen} | {gen} | {names.get(s, s)} | {rate:,.0f} | {p50:.0f} | {p99:.0f} | {cpu:.1f} |")
PY
