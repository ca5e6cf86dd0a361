#!/usr/bin/env bash
# Messages through a leaf link: publisher on the leaf, subscriber on the hub,
# the same server on both ends, three setups in one run:
#   BE  = Broker Edge hub + Broker Edge leaf   target/release/broker-edge (default shards)
#   R15 = nats-server 2.15.3 on both ends      target/refs/bin/nats-server-2.15.3 (scripts/install-refs)
#   R29 = nats-server 2.9.10 on both ends      /usr/sbin/nats-server (skipped if absent)
# Two generators: broker-edge-bench (pubsub --url LEAF --sub-url HUB) and
# leafbench on the official Go client (bench/go/leafbench), both waiting
# until the subscription has crossed the link before counting. Server CPU is
# utime+stime of the hub and of the leaf over the measured phase, per message.
# Runs are interleaved: round → size → generator → BE R15 R29, so drift of
# the machine spreads over all three setups. The table gives medians of the
# rounds and Broker Edge's ratios to each reference (median of per-round
# ratios); the issue's goal is msgs/s ≥ 1.5× at total CPU/msg ≤ 1.0×.
#
#   bash bench/scripts/leaf-bench.sh                      # ROUNDS=3, 2M×16 B, 1M×128 B
#   ROUNDS=5 MSGS16=3000000 MSGS128=1500000 bash bench/scripts/leaf-bench.sh
#   ROUNDS=1 MSGS16=20000 MSGS128=20000 bash bench/scripts/leaf-bench.sh   # smoke
#   ONLY_SETUPS="BE R15" GENS=leafbench SIZES=128 …                          # a subset
# Needs: cargo build --release (broker-edge, broker-edge-bench);
#        bash bench/go/leafbench/build.sh (target/tools/leafbench).
# JSON per run in $OUT/runs/, server logs in $OUT/, table in $OUT/results.md.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
MSGS16=${MSGS16:-2000000}
MSGS128=${MSGS128:-1000000}
SIZES=${SIZES:-"16 128"}
GENS=${GENS:-"bench leafbench"}
OUT=${OUT:-target/bench-leaf}
BE=${BE:-target/release/broker-edge}
R15=${R15:-target/refs/bin/nats-server-2.15.3}
R29=${R29:-/usr/sbin/nats-server}
BENCH=${BENCH:-target/release/broker-edge-bench}
LEAFBENCH=${LEAFBENCH:-target/tools/leafbench}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
for f in "$BENCH" "$LEAFBENCH"; do
  [[ -x "$f" ]] || { echo "missing $f (see the header of $0)" >&2; exit 1; }
done
rm -rf "$OUT/runs"; mkdir -p "$OUT/runs"
source "$(dirname "$0")/servers.sh"

# Fixed local ports per setup: client hub/leaf, leafnode listener, http hub/leaf.
declare -A BASE=([BE]=14810 [R15]=14820 [R29]=14830)
SETUPS=()
for s in ${ONLY_SETUPS:-BE R15 R29}; do
  case $s in
    BE) SETUPS+=(BE) ;;
    R15) if [[ -x "$R15" ]]; then SETUPS+=(R15); else echo "skipping nats-server 2.15.3: $R15 missing (scripts/install-refs)" >&2; fi ;;
    R29) if [[ -x "$R29" ]]; then SETUPS+=(R29); else echo "skipping nats-server 2.9.10: $R29 missing" >&2; fi ;;
    *) echo "unknown setup $s (BE R15 R29)" >&2; exit 1 ;;
  esac
done
declare -A BIN=([BE]="$BE" [R15]="$R15" [R29]="$R29")
[[ " ${SETUPS[*]} " != *" BE "* || -x "$BE" ]] || { echo "missing $BE (cargo build --release)" >&2; exit 1; }

leafz() { # http port -> number of leaf links, or 0
  python3 - "$1" <<'PY' 2>/dev/null || echo 0
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/leafz", timeout=2) as r:
    print(int(json.load(r).get("leafnodes") or 0))
PY
}

for s in "${SETUPS[@]}"; do
  b=${BASE[$s]}; hub=$((b + 1)); leaf=$((b + 2)); lport=$((b + 3)); hhttp=$((b + 4)); lhttp=$((b + 5))
  printf 'server_name: "%s-hub"\nleafnodes {\n  host: "127.0.0.1"\n  port: %d\n}\n' "$s" "$lport" >"$OUT/$s-hub.conf"
  printf 'server_name: "%s-leaf"\nleafnodes {\n  remotes: [ { url: "nats://127.0.0.1:%d" } ]\n}\n' "$s" "$lport" >"$OUT/$s-leaf.conf"
  start_server "$s-hub" "$hub" "${BIN[$s]}" -c "$OUT/$s-hub.conf" -a 127.0.0.1 -p "$hub" -m "$hhttp"
  start_server "$s-leaf" "$leaf" "${BIN[$s]}" -c "$OUT/$s-leaf.conf" -a 127.0.0.1 -p "$leaf" -m "$lhttp"
  ok=0
  for _ in $(seq 200); do
    if [[ $(leafz "$hhttp") -ge 1 && $(leafz "$lhttp") -ge 1 ]]; then ok=1; break; fi
    sleep 0.1
  done
  if ((!ok)); then echo "$s: no leaf link in /leafz after 20 s (see $OUT/server-$s-*.log)" >&2; exit 1; fi
  echo "$s: hub 127.0.0.1:$hub (pid ${PID[$s-hub]}), leaf 127.0.0.1:$leaf (pid ${PID[$s-leaf]}), link up" >&2
done

start_time=$(date +%s)
for round in $(seq "$ROUNDS"); do
  echo ">>> round $round/$ROUNDS" >&2
  for size in $SIZES; do
    msgs=$MSGS128; [[ $size == 16 ]] && msgs=$MSGS16
    for gen in $GENS; do
      for s in "${SETUPS[@]}"; do
        hub="nats://127.0.0.1:${PORT[$s-hub]}"; leaf="nats://127.0.0.1:${PORT[$s-leaf]}"
        f="$OUT/runs/r${round}_${size}_${gen}_$s.json"
        if [[ $gen == bench ]]; then
          cmd=("$BENCH" pubsub --size "$size" --msgs "$msgs" --url "$leaf" --sub-url "$hub"
               --pid-a "${PID[$s-leaf]}" --sub-pid "${PID[$s-hub]}" --json -q)
        else
          cmd=("$LEAFBENCH" --pub-url "$leaf" --sub-url "$hub" --size "$size" --msgs "$msgs"
               --timeout 120s --pub-pid "${PID[$s-leaf]}" --sub-pid "${PID[$s-hub]}")
        fi
        timeout "$RUN_TIMEOUT" "${cmd[@]}" >"$f" 2>"$f.err" || echo "!!! $gen $size B $s (round $round): see $f.err" >&2
        sleep 0.3
      done
    done
  done
done
echo "measured phase: $(( $(date +%s) - start_time )) s" >&2

python3 - "$OUT/runs" "$ROUNDS" <<'PY' | tee "$OUT/results.md"
import json, sys, glob, os, statistics
runs = {}
for f in glob.glob(os.path.join(sys.argv[1], "r*.json")):
    rnd, size, gen, s = os.path.basename(f)[:-5].split("_")
    text = open(f).read().strip()
    try:
        j = json.loads(text)
    except Exception:
        try:
            j = json.loads(text.splitlines()[-1])
        except Exception:
            continue
    if gen == "bench":
        sv = j.get("servers") or {}
        ok = j.get("lost", 1) == 0 and not j.get("errors")
        row = dict(rate=j.get("msgs_per_s"), hub=sv.get("sub_server_us_per_msg"),
                   leaf=sv.get("pub_server_us_per_msg"), total=j.get("server_us_per_msg"), ok=ok)
    else:
        ok = not j.get("timed_out") and j.get("lost", 1) == 0 and not j.get("errors")
        row = dict(rate=j.get("msgs_per_sec"), hub=j.get("sub_server_cpu_us_per_msg"),
                   leaf=j.get("pub_server_cpu_us_per_msg"), total=j.get("server_cpu_us_per_msg"), ok=ok)
    runs[(int(rnd[1:]), int(size), gen, s)] = row
def med(v):
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def good(k):
    r = runs.get(k)
    return r if r and r["ok"] else None
setups = [s for s in ["BE", "R15", "R29"] if any(k[3] == s for k in runs)]
names = {"BE": "Broker Edge (both ends)", "R15": "nats-server 2.15.3 (both ends)", "R29": "nats-server 2.9.10 (both ends)"}
gens = {"bench": "broker-edge-bench", "leafbench": "leafbench (Go client)"}
rounds = sorted({k[0] for k in runs})
f = lambda v, d=3: "–" if v is None else f"{v:,.{d}f}"
print("Publisher on the leaf, subscriber on the hub; medians of the clean rounds. "
      "CPU is µs per message; ratios are Broker Edge / that reference "
      "(median of per-round ratios; msgs/s above 1 and CPU below 1 favour Broker Edge).")
print()
print("| setup | generator | size | msgs/s | hub CPU µs/msg | leaf CPU µs/msg | total CPU µs/msg | clean rounds | BE/this msgs/s | BE/this total CPU |")
print("|---|---|---|---|---|---|---|---|---|---|")
for gen in ["bench", "leafbench"]:
    for size in sorted({k[1] for k in runs}):
        for s in setups:
            rows = [good((r, size, gen, s)) for r in rounds]
            rows = [x for x in rows if x]
            if not any(k[1] == size and k[2] == gen and k[3] == s for k in runs):
                continue
            m = {k: med([x[k] for x in rows]) for k in ["rate", "hub", "leaf", "total"]}
            rr, rc = "", ""
            if s != "BE":
                pr = [(good((r, size, gen, "BE")), good((r, size, gen, s))) for r in rounds]
                pr = [(a, b) for a, b in pr if a and b]
                rr = med([a["rate"] / b["rate"] for a, b in pr if a["rate"] and b["rate"]])
                rc = med([a["total"] / b["total"] for a, b in pr if a["total"] and b["total"]])
                rr = "–" if rr is None else f"**{rr:.2f}×**"
                rc = "–" if rc is None else f"**{rc:.2f}×**"
            n = sum(1 for r in rounds if (r, size, gen, s) in runs)
            print(f"| {names[s]} | {gens[gen]} | {size} B | {f(m['rate'], 0)} | {f(m['hub'])} | {f(m['leaf'])} | {f(m['total'])} | {len(rows)}/{n} | {rr} | {rc} |")
PY
