#!/usr/bin/env python3
"""Request/reply latency as a nats-py user sees it: one responder
connection, one requester connection, one request outstanding at a time.
Prints one JSON line (microseconds). Part of bench/scripts/latency-policy.sh:
    python3 bench/scripts/reqrep_nats_py.py nats://127.0.0.1:4222 3000 16
"""
import asyncio
import json
import sys
import time

import nats


async def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    responder = await nats.connect(url)
    requester = await nats.connect(url)

    async def answer(m):
        await responder.publish(m.reply, m.data)

    await responder.subscribe("bench.reqrep", cb=answer)
    await responder.flush()
    body = b"x" * size
    for _ in range(100):
        await requester.request("bench.reqrep", body, timeout=5)
    took = []
    for _ in range(n):
        t = time.perf_counter()
        await requester.request("bench.reqrep", body, timeout=5)
        took.append(int((time.perf_counter() - t) * 1e6))
    took.sort()

    def q(p):
        return took[min(int(len(took) * p), len(took) - 1)]

    print(json.dumps({"client": "nats-py", "msgs": n, "p50_us": q(0.5),
                      "p90_us": q(0.9), "p99_us": q(0.99), "max_us": took[-1]}))
    await requester.close()
    await responder.close()


asyncio.run(main())
