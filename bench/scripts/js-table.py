#!/usr/bin/env python3
"""Formats js-matrix.sh's JSON files (one per run) as Markdown tables.

A = Broker Edge, B = nats-server 2.15.3, C = nats-server 2.9.10. Ratios are
X/A (the other server's figure over Broker Edge's), per round, then their
median: msgs/s above 1 and server CPU or latency below 1 favour X over A.
Absolute figures are medians over the clean rounds."""
import glob
import json
import os
import re
import statistics
import sys

CASES = [("async-128", "js-pub-async 128 B"), ("async-1k", "js-pub-async 1 KiB"),
         ("async-16k", "js-pub-async 16 KiB"), ("sync-128", "js-pub-sync 128 B")]
TOOLS = [("bench", "broker-edge-bench"), ("gobench", "gobench (nats.go)")]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def human(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ratio(x, a):
    return None if x is None or not a else x / a


def per_round(values, m):
    # "x": a round without a ratio (a side failed or lost messages).
    return " ".join("x" if v is None else f"{v:.2f}" for v in values) + f" → **{fmt(m, '.2f')}**"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def normalise(tool, d):
    """One run as {rate, mbps, cpu, p50, p99, problem}; None if no result."""
    if d is None:
        return None
    if tool == "bench":
        lat = d.get("latency") or {}
        problem = None
        if d.get("lost") or d.get("errors"):
            problem = f"lost {d.get('lost')}, errors {d.get('errors')}"
        return dict(rate=d["msgs_per_s"], mbps=d["mb_per_s"], cpu=d.get("server_us_per_msg"),
                    p50=lat.get("p50_us"), p99=lat.get("p99_us"), problem=problem)
    problem = None
    if d.get("errors") or d.get("timed_out") or d.get("completed") != d.get("msgs"):
        problem = (f"completed {d.get('completed')}/{d.get('msgs')}, errors {d.get('errors')}, "
                   f"timed_out {d.get('timed_out')} {d.get('error', '')}")
    return dict(rate=d["msgs_per_sec"], mbps=d["MB_per_sec"], cpu=d.get("server_cpu_us_per_msg"),
                p50=d.get("p50_us"), p99=d.get("p99_us"), problem=problem)


def main(runs):
    servers = []  # (label, name, version)
    with open(os.path.join(runs, "servers.tsv")) as f:
        for line in f:
            s, name, _port, _pid, version = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
            servers.append((s, name, version))
    labels = [s for s, _, _ in servers]
    others = labels[1:]
    rounds = sorted({int(m.group(1)) for p in glob.glob(os.path.join(runs, "r*_*.json"))
                     if (m := re.match(r"r(\d+)_", os.path.basename(p)))})
    problems = []

    def get(rnd, case, tool, s):
        f = os.path.join(runs, f"r{rnd}_{case}_{tool}_{s}.json")
        if not os.path.exists(f):
            return None
        r = normalise(tool, load(f))
        if r is None:
            err = f[:-5] + ".err"
            why = open(err).read().strip().splitlines()[-1:] if os.path.exists(err) else []
            problems.append(f"round {rnd} {case} {tool} {s}: no result {' '.join(why)}")
        elif r["problem"]:
            problems.append(f"round {rnd} {case} {tool} {s}: {r['problem']}")
        return r

    def clean(r):
        return r is not None and not r["problem"]

    # Disk probe and loopback round trip, per round.
    disk = {r: load(os.path.join(runs, f"r{r}_disk.json")) for r in rounds}
    rtt = {(r, s): get(r, "reqrep", "bench", s) for r in rounds for s in labels}

    print("Servers: " + ", ".join(f"{s} = {name} ({v})" for s, name, v in servers) + ".")
    print(f"Ratios are X/A per round → median (A = {servers[0][1]}): msgs/s > 1 means X is faster; "
          "srv µs/msg and latency < 1 mean X spends less / answers sooner.\n")

    # Throughput and server CPU.
    head = ["case", "tool"] + [f"{s} msgs/s" for s in labels] + [f"{x}/A msgs/s" for x in others] \
        + [f"{s} srv µs/msg" for s in labels] + [f"{x}/A srv µs/msg" for x in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    table = {}
    for case, title in CASES:
        for tool, tname in TOOLS:
            runs_ = {(r, s): get(r, case, tool, s) for r in rounds for s in labels}
            if all(v is None for v in runs_.values()):
                continue
            table[(case, tool)] = runs_
            cells = [title, tname]
            rate = {s: med([runs_[(r, s)]["rate"] for r in rounds if clean(runs_[(r, s)])]) for s in labels}
            cpu = {s: med([runs_[(r, s)]["cpu"] for r in rounds if clean(runs_[(r, s)])]) for s in labels}
            cells += [human(rate[s]) for s in labels]
            for x in others:
                rs = [ratio(runs_[(r, x)]["rate"], runs_[(r, "A")]["rate"])
                      if clean(runs_[(r, x)]) and clean(runs_[(r, "A")]) else None for r in rounds]
                cells.append(per_round(rs, med(rs)))
            cells += [fmt(cpu[s], ".2f") for s in labels]
            for x in others:
                rs = [ratio(runs_[(r, x)]["cpu"], runs_[(r, "A")]["cpu"])
                      if clean(runs_[(r, x)]) and clean(runs_[(r, "A")]) else None for r in rounds]
                cells.append(per_round(rs, med(rs)))
            print("| " + " | ".join(cells) + " |")
    print()

    fsync_p50 = med([d["fdatasync_p50_us"] for d in disk.values() if d])
    fsync_p99 = med([d["fdatasync_p99_us"] for d in disk.values() if d])
    seq_mb = med([d["seq_mb_per_s"] for d in disk.values() if d])

    # Sync publish latency against one loopback round trip + one fdatasync.
    head = ["tool", "server", "msgs/s", "p50 µs", "p99 µs", "p50 X/A", "reqrep p50 µs (RTT)",
            "fdatasync p50 µs", "floor = RTT + fdatasync", "p50 / floor"]
    print("js-pub-sync 128 B: each publish waits for its PubAck. The floor is this server's "
          "reqrep 128 B p50 (one request/reply through it on loopback) plus the disk's fdatasync "
          "p50, both measured in the same rounds.\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for tool, tname in TOOLS:
        runs_ = table.get(("sync-128", tool))
        if not runs_:
            continue
        for s, name, _ in servers:
            ok = [runs_[(r, s)] for r in rounds if clean(runs_[(r, s)])]
            p50, p99 = med([x["p50"] for x in ok]), med([x["p99"] for x in ok])
            if s == "A":
                rel = "-"
            else:
                rs = [ratio(runs_[(r, s)]["p50"], runs_[(r, "A")]["p50"])
                      if clean(runs_[(r, s)]) and clean(runs_[(r, "A")]) else None for r in rounds]
                rel = per_round(rs, med(rs))
            rt = med([rtt[(r, s)]["p50"] for r in rounds if clean(rtt[(r, s)])])
            floor = None if rt is None or fsync_p50 is None else rt + fsync_p50
            print(f"| {tname} | {s} {name} | {human(med([x['rate'] for x in ok]))} | {fmt(p50, '.0f')} | "
                  f"{fmt(p99, '.0f')} | {rel} | {fmt(rt, '.1f')} | {fmt(fsync_p50, '.0f')} | "
                  f"{fmt(floor, '.0f')} | {fmt(ratio(p50, floor), '.2f')} |")
    print()

    # 16 KiB publishes against the disk's sequential bandwidth.
    head = ["tool", "server", "payload MB/s", "disk sequential MB/s", "share of the disk"]
    print("js-pub-async 16 KiB payload bandwidth against the disk probe's sequential write "
          "bandwidth (MB = 10^6 bytes, payload only).\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for tool, tname in TOOLS:
        runs_ = table.get(("async-16k", tool))
        if not runs_:
            continue
        for s, name, _ in servers:
            mb = med([runs_[(r, s)]["mbps"] for r in rounds if clean(runs_[(r, s)])])
            print(f"| {tname} | {s} {name} | {fmt(mb, '.0f')} | {fmt(seq_mb, '.0f')} | "
                  f"{fmt(ratio(mb, seq_mb), '.2f')} |")
    print()

    print("Disk probe (the directory holding the stores), per round:\n")
    print("| round | fs | fdatasync 4 KiB append p50 / p99 µs | sequential write | MB/s |")
    print("|---|---|---|---|---|")
    for r in rounds:
        d = disk[r]
        if not d:
            problems.append(f"round {r}: no disk probe")
            continue
        print(f"| {r} | {d['fs_type']} {d['device']} | {d['fdatasync_p50_us']:.0f} / "
              f"{d['fdatasync_p99_us']:.0f} | {d['seq_bytes'] >> 20} MiB in "
              f"{d['seq_block'] >> 10} KiB writes, {d['seq_mode']} | {d['seq_mb_per_s']:.0f} |")
    if len(rounds) > 1:
        print(f"| median | | {fmt(fsync_p50, '.0f')} / {fmt(fsync_p99, '.0f')} | | {fmt(seq_mb, '.0f')} |")
    print()
    for p in problems:
        print(f"* problem: {p}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-js/runs")
