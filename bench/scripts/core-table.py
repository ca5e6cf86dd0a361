#!/usr/bin/env python3
"""Formats core-matrix.sh's JSON files as the Markdown tables in BENCHMARKS.md.

All ratios are B/A (B = broker-edge, A = nats-server): msgs/s above 1 and
server CPU per message below 1 favour B."""
import json
import os
import statistics
import sys

ORDER = ["pubsub-16", "pubsub-128", "fanout-16", "fanout-128", "queue-16",
         "queue-128", "pub-16", "pub-128", "reqrep-16", "reqrep-128"]


def human(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f3(v):
    return "-" if v is None else f"{v:.3f}"


def f2(v):
    return "-" if v is None else f"{v:.2f}"


def noise(rs):
    """Median share of the box's CPU used by other processes during the runs."""
    ncpu = os.cpu_count() or 1
    xs = [x["other_cpu_s"] / (x["elapsed_s"] * ncpu)
          for r in rs for x in (r["a"], r["b"])
          if x.get("other_cpu_s") is not None and x["elapsed_s"] > 0]
    m = med(xs)
    return "-" if m is None else f"{100 * m:.0f}%"


def rounds_and_median(values, med_value, fmt=f2):
    # "x" marks a round left out because a side lost messages.
    return " ".join("x" if v is None else fmt(v) for v in values) + f" → **{fmt(med_value)}**"


def main(out):
    thr, lat, problems = [], [], []
    for name in ORDER:
        path = os.path.join(out, name + ".json")
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                c = json.load(f)
        except (OSError, ValueError):
            problems.append(f"{name}: no result (the run failed)")
            continue
        with open(os.path.join(out, name + ".cmd")) as f:
            cmd = f.read().strip()
        rs = c["rounds"]
        for r in rs:
            for side in ("a", "b"):
                x = r[side]
                if x["lost"] or x["errors"]:
                    problems.append(f"{name} {x['label']}: lost {x['lost']}, errors {x['errors']}")
        # Rounds where a side lost messages carry no ratios (None); absolute
        # figures come from the clean runs only.
        def ok(x):
            return not x["lost"] and not x["errors"]
        rate_key = "deliveries_per_s" if name.startswith("fanout") else "msgs_per_s"
        a_rate = med([r["a"][rate_key] for r in rs if ok(r["a"])])
        b_rate = med([r["b"][rate_key] for r in rs if ok(r["b"])])
        a_cpu = med([r["a"]["server_us_per_msg"] for r in rs if ok(r["a"])])
        b_cpu = med([r["b"]["server_us_per_msg"] for r in rs if ok(r["b"])])
        ratios = [r["ratios"]["msgs_per_s"] for r in rs]
        cpu_ratios = [r["ratios"]["server_us_per_msg"] for r in rs]
        scen, size = name.split("-")
        label = f"{scen} {size} B" + (f" (1→{rs[0]['a']['subs']})" if scen in ("fanout", "queue") else "")
        if scen == "reqrep":
            p50a = med([r["a"]["latency"]["p50_us"] for r in rs])
            p50b = med([r["b"]["latency"]["p50_us"] for r in rs])
            p99a = med([r["a"]["latency"]["p99_us"] for r in rs])
            p99b = med([r["b"]["latency"]["p99_us"] for r in rs])
            lat.append(
                f"| {label} | {p50a:.0f} / {p99a:.0f} | {p50b:.0f} / {p99b:.0f} | "
                f"{rounds_and_median([r['ratios']['p50_us'] for r in rs], c['median']['p50_us'])} | "
                f"{rounds_and_median([r['ratios']['p99_us'] for r in rs], c['median']['p99_us'])} | "
                f"{f2(a_cpu)} / {f2(b_cpu)} | {noise(rs)} | `{cmd}` |")
        else:
            thr.append(
                f"| {label} | {human(a_rate)} | {human(b_rate)} | "
                f"{rounds_and_median(ratios, c['median']['msgs_per_s'])} | "
                f"{f3(a_cpu)} | {f3(b_cpu)} | "
                f"{rounds_and_median(cpu_ratios, c['median']['server_us_per_msg'])} | {noise(rs)} | `{cmd}` |")
    if thr:
        print("| scenario | A msgs/s¹ | B msgs/s¹ | B/A msgs/s per round → median "
              "| A srv µs/msg | B srv µs/msg | B/A srv µs/msg per round → median | other load² | command |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(thr))
        print("\n¹ fan-out rows count deliveries/s (4 per published message); ratios are the same either way.")
        print("² median share of the machine's CPU that other processes used during the runs.")
        print()
    if lat:
        print("| scenario | A p50 / p99 µs | B p50 / p99 µs | B/A p50 per round → median "
              "| B/A p99 per round → median | srv µs/request A / B | other load² | command |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(lat))
        print()
    for p in problems:
        print(f"* problem: {p}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-core")
