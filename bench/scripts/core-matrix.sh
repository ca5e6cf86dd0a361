#!/usr/bin/env bash
# Runs the core-messaging comparison recorded in BENCHMARKS.md: every row
# starts A (nats-server, the reference) and B (broker-edge) afresh, runs
# A B A B … and writes one JSON file per row; core-table.py turns them into
# the Markdown table. Run from the repository root after
#   cargo build --release -p broker-edge -p broker-edge-bench
set -euo pipefail
BENCH=${BENCH:-target/release/broker-edge-bench}
A_PORT=${A_PORT:-14301}
B_PORT=${B_PORT:-14302}
A_CMD=${A_CMD:-/usr/sbin/nats-server -a 127.0.0.1 -p $A_PORT}
B_CMD=${B_CMD:-target/release/broker-edge -a 127.0.0.1 -p $B_PORT}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-target/bench-core}
ONLY=${ONLY:-}
# Extra bench arguments for every row, e.g. EXTRA="--cpus 1".
EXTRA=${EXTRA:-}
mkdir -p "$OUT"

# name, rounds ("-" = $ROUNDS), bench arguments. Request/reply runs are short
# and many: latency suffers most from other load, and a median over many
# short interleaved pairs shrugs off a burst that hits one side.
rows=(
  "pubsub-16   -  pubsub --size 16  --msgs 5000000"
  "pubsub-128  -  pubsub --size 128 --msgs 4000000"
  "fanout-16   -  fanout --size 16  --subs 4 --msgs 2000000"
  "fanout-128  -  fanout --size 128 --subs 4 --msgs 1500000"
  "queue-16    -  queue  --size 16  --subs 4 --msgs 4000000"
  "queue-128   -  queue  --size 128 --subs 4 --msgs 3000000"
  "pub-16      -  pub    --size 16  --msgs 20000000"
  "pub-128     -  pub    --size 128 --msgs 10000000"
  "reqrep-16   15 reqrep --size 16  --msgs 5000"
  "reqrep-128  15 reqrep --size 128 --msgs 5000"
)

for row in "${rows[@]}"; do
  read -r name rounds args <<<"$row"
  [[ "$rounds" == "-" ]] && rounds=$ROUNDS
  if [[ -n "$ONLY" && "$name" != $ONLY ]]; then continue; fi
  # shellcheck disable=SC2086
  cmd=("$BENCH" $args $EXTRA --rounds "$rounds"
       --url "nats://127.0.0.1:$A_PORT" --spawn-a "$A_CMD"
       --compare "nats://127.0.0.1:$B_PORT" --spawn-b "$B_CMD")
  echo ">>> $name" >&2
  # The command as a person would type it, for the table.
  echo "$BENCH $args $EXTRA --rounds $rounds --url nats://127.0.0.1:$A_PORT --spawn-a \"$A_CMD\"" \
       "--compare nats://127.0.0.1:$B_PORT --spawn-b \"$B_CMD\"" | tr -s ' ' > "$OUT/$name.cmd"
  "${cmd[@]}" --json -q > "$OUT/$name.json" || echo "!!! $name failed" >&2
done
python3 "$(dirname "$0")/core-table.py" "$OUT"
