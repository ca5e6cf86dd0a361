# Sourced by the comparison scripts (latency-policy.sh, shard-fill.sh,
# core-both.sh): start servers on fixed ports, stop them on exit.
# Needs $OUT (logs go to $OUT/server-<label>.log).
declare -A PID PORT
PIDS=()
stop_servers() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_servers EXIT
start_server() { # label port command…
  local s=$1 port=$2; shift 2
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use" >&2; exit 1
  fi
  "$@" >"$OUT/server-$s.log" 2>&1 &
  PID[$s]=$!; PIDS+=("$!"); PORT[$s]=$port
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "${PID[$s]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$s did not start on port $port (see $OUT/server-$s.log)" >&2; exit 1
}
