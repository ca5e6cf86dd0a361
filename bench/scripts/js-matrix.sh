#!/usr/bin/env bash
# JetStream publish comparison in one command: builds (release), starts
#   A = Broker Edge            target/release/broker-edge -js -sd <tmp>/a
#   B = nats-server 2.15.3     target/refs/bin/nats-server-2.15.3 -js -sd <tmp>/b
#   C = nats-server 2.9.10     /usr/sbin/nats-server -js -sd <tmp>/c  (skipped if absent)
# on distinct loopback ports, and runs ROUNDS interleaved rounds (A B C A B C …) of
#   js-pub-async 128 B, 1 KiB, 16 KiB and js-pub-sync 128 B
# with broker-edge-bench and with the Go-client generator gobench, plus per
# round a reqrep 128 B run per server (the loopback round trip) and the disk
# probe (fdatasync latency, sequential bandwidth) in the directory holding
# the stores. js-table.py turns the JSON files into the tables, written to
# $OUT/results.md. Run from the repository root:
#   bash bench/scripts/js-matrix.sh
#   JS_MSGS=2000 ROUNDS=1 bash bench/scripts/js-matrix.sh     # a quick functional pass
set -euo pipefail

ROUNDS=${ROUNDS:-3}
# Messages per run: 128 B async; the other sizes and sync scale from it.
JS_MSGS=${JS_MSGS:-200000}
JS_MSGS_1K=${JS_MSGS_1K:-$((JS_MSGS / 2))}
JS_MSGS_16K=${JS_MSGS_16K:-$((JS_MSGS / 10))}
JS_SYNC_MSGS=${JS_SYNC_MSGS:-$((JS_MSGS / 40))}
RR_MSGS=${RR_MSGS:-5000}
WINDOW=${WINDOW:-256}
DISK_ITERS=${DISK_ITERS:-500}
DISK_SEQ=${DISK_SEQ:-256MiB}
# Any one run longer than this is cut (and reported as failed).
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
OUT=${OUT:-target/bench-js}
# The stores (and the disk probe) live under a fresh directory here.
STORE_BASE=${STORE_BASE:-${TMPDIR:-/tmp}}
A_PORT=${A_PORT:-14471}
B_PORT=${B_PORT:-14472}
C_PORT=${C_PORT:-14473}
A_BIN=${A_BIN:-target/release/broker-edge}
B_BIN=${B_BIN:-target/refs/bin/nats-server-2.15.3}
C_BIN=${C_BIN:-/usr/sbin/nats-server}
BENCH=${BENCH:-target/release/broker-edge-bench}
GOBENCH=${GOBENCH:-target/tools/gobench}
GOBENCH_SRC=${GOBENCH_SRC:-../shared/tools/gobench}
# NO_BUILD=1 uses the binaries as they are.
NO_BUILD=${NO_BUILD:-0}
# TOOLS="bench" or "gobench" runs one generator only.
TOOLS=${TOOLS:-bench gobench}

if [[ "$NO_BUILD" != 1 ]]; then
  cargo build --release -p broker-edge -p broker-edge-bench
  [[ -x "$GOBENCH" ]] || OUT="$PWD/$GOBENCH" bash "$GOBENCH_SRC/build.sh"
fi
for b in "$BENCH" "$A_BIN" "$B_BIN"; do
  [[ -x "$b" ]] || { echo "missing $b" >&2; exit 1; }
done
if [[ " $TOOLS " == *" gobench "* && ! -x "$GOBENCH" ]]; then
  echo "missing $GOBENCH (bash $GOBENCH_SRC/build.sh)" >&2
  exit 1
fi

rm -rf "$OUT/runs"
mkdir -p "$OUT/runs"
BASE=$(mktemp -d "$STORE_BASE/js-matrix.XXXXXX")
declare -A PID PORT NAME
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ "${KEEP_STORE:-0}" == 1 ]] || rm -rf "$BASE"
}
trap cleanup EXIT

start() { # label name port binary
  local s=$1 name=$2 port=$3 bin=$4
  # Someone else's server on the port would be measured in ours' place.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: pick another with ${s}_PORT=…" >&2
    exit 1
  fi
  mkdir -p "$BASE/$s"
  "$bin" -a 127.0.0.1 -p "$port" -js -sd "$BASE/$s" >"$OUT/server-$s.log" 2>&1 &
  PID[$s]=$!
  PIDS+=("$!")
  PORT[$s]=$port
  NAME[$s]=$name
  for _ in $(seq 100); do
    if kill -0 "${PID[$s]}" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      local v
      v=$("$bin" --version 2>&1 | head -1 || true)
      printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$name" "$port" "${PID[$s]}" "$v" >>"$OUT/runs/servers.tsv"
      return 0
    fi
    kill -0 "${PID[$s]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start on port $port (see $OUT/server-$s.log)" >&2
  exit 1
}

SERVERS=(A B)
start A "Broker Edge" "$A_PORT" "$A_BIN"
start B "nats-server 2.15.3" "$B_PORT" "$B_BIN"
if [[ -x "$C_BIN" ]]; then
  start C "nats-server $("$C_BIN" --version 2>&1 | sed -n 's/.*v\([0-9.]*\).*/\1/p')" "$C_PORT" "$C_BIN"
  SERVERS+=(C)
else
  echo "note: $C_BIN not installed (apt-get install nats-server); running A and B only" >&2
fi

# case, scenario, size, msgs
cases=(
  "async-128 js-pub-async 128 $JS_MSGS"
  "async-1k  js-pub-async 1024 $JS_MSGS_1K"
  "async-16k js-pub-async 16384 $JS_MSGS_16K"
  "sync-128  js-pub-sync 128 $JS_SYNC_MSGS"
)

run() { # file, command…
  local f=$1
  shift
  echo "$*" >>"$OUT/runs/commands.txt"
  if ! timeout "$RUN_TIMEOUT" "$@" >"$f.json" 2>"$f.err"; then
    echo "!!! failed: $* (see $f.err)" >&2
  fi
}

one() { # file tool server scenario size msgs
  local f=$1 tool=$2 s=$3 scen=$4 size=$5 msgs=$6
  local url="nats://127.0.0.1:${PORT[$s]}"
  if [[ $tool == bench ]]; then
    run "$f" "$BENCH" "$scen" --size "$size" --msgs "$msgs" --window "$([[ $scen == js-pub-sync ]] && echo 1 || echo "$WINDOW")" \
      --subject bench.js --stream BENCH --url "$url" --pid-a "${PID[$s]}" --json -q
  else
    run "$f" "$GOBENCH" --url "$url" --scenario "$scen" --size "$size" --msgs "$msgs" --window "$WINDOW" \
      --server-pid "${PID[$s]}" --label "$s"
  fi
}

# Unrecorded warm-up: first-touch costs (store files, page cache, lazy init).
warm=$((JS_MSGS / 10 > 1000 ? JS_MSGS / 10 : 1000))
for tool in $TOOLS; do
  for s in "${SERVERS[@]}"; do
    one "$OUT/runs/warmup_${tool}_$s" "$tool" "$s" js-pub-async 128 "$warm"
  done
done
rm -f "$OUT"/runs/warmup_*

started=$(date +%s)
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  run "$OUT/runs/r${round}_disk" "$BENCH" disk-probe --dir "$BASE" --iters "$DISK_ITERS" --seq-size "$DISK_SEQ" --json
  for s in "${SERVERS[@]}"; do
    run "$OUT/runs/r${round}_reqrep_bench_$s" "$BENCH" reqrep --size 128 --msgs "$RR_MSGS" \
      --url "nats://127.0.0.1:${PORT[$s]}" --pid-a "${PID[$s]}" --json -q
  done
  for c in "${cases[@]}"; do
    read -r name scen size msgs <<<"$c"
    for tool in $TOOLS; do
      for s in "${SERVERS[@]}"; do
        echo "    $name $tool $s" >&2
        one "$OUT/runs/r${round}_${name}_${tool}_$s" "$tool" "$s" "$scen" "$size" "$msgs"
        sleep 0.3
      done
    done
  done
done
echo ">>> $(($(date +%s) - started)) s of rounds" >&2

python3 "$(dirname "$0")/js-table.py" "$OUT/runs" | tee "$OUT/results.md"
echo "results: $OUT/results.md" >&2
