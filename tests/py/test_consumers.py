#!/usr/bin/env python3
"""JetStream consumers and KV with nats-py, run by tests/python_consumers.rs:

    test_consumers.py URL

pull_subscribe + fetch + ack (and a nak redelivered with its delivery
count), consumer_info counts, a push subscription with manual acks, and a
KV bucket: put/get/update with revision/delete and a watcher that sees the
current values, the end-of-initial marker, then every update in order.
Exits 0 on success.
"""

import asyncio
import sys

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import KeyWrongLastSequenceError

STEP = 5.0


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


async def pull(js, jsm):
    await jsm.add_stream(StreamConfig(name="PYWORK", subjects=["py.work.>"]))
    for i in range(1, 6):
        await js.publish(f"py.work.{i}", f"job-{i}".encode())

    psub = await js.pull_subscribe(
        "py.work.>",
        durable="PYPULL",
        stream="PYWORK",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )
    msgs = await psub.fetch(3, timeout=STEP)
    check([m.metadata.sequence.stream for m in msgs] == [1, 2, 3], "fetch 3: seqs 1..3")
    check(msgs[0].data == b"job-1" and msgs[0].subject == "py.work.1", "payload and subject")
    check(msgs[0].metadata.num_delivered == 1, "first delivery")
    check(msgs[0].metadata.num_pending == 4, "num_pending in the metadata")
    await msgs[0].ack_sync()
    await msgs[1].ack()
    await msgs[2].nak()

    # The nak'd message comes back (delivered twice) with the rest. The
    # server applies acks asynchronously, so a pull right after the nak may
    # be served before it: pull until all three are in (bounded).
    got = []
    for _ in range(10):
        try:
            rest = await psub.fetch(10, timeout=1)
        except nats.errors.TimeoutError:
            rest = []
        for m in rest:
            got.append((m.metadata.sequence.stream, m.metadata.num_delivered))
            await m.ack_sync()
        if len(got) >= 3:
            break
    got.sort()
    check(got == [(3, 2), (4, 1), (5, 1)], f"fetch the rest and the nak'd one ({got})")
    try:
        await psub.fetch(1, timeout=0.5)
        raise Failed("fetch on an empty consumer returned messages")
    except nats.errors.TimeoutError:
        check(True, "fetch on an empty consumer times out")

    info = await jsm.consumer_info("PYWORK", "PYPULL")
    check(info.num_pending == 0, "consumer_info num_pending 0")
    check(info.num_ack_pending == 0, "consumer_info num_ack_pending 0")
    check(info.delivered.stream_seq == 5, "delivered stream_seq 5")
    check(info.ack_floor.stream_seq == 5, "ack_floor stream_seq 5")
    check(info.config.ack_wait == 30, "ack_wait 30 s")
    check(info.config.max_deliver == -1, "max_deliver -1")


async def push(js, jsm):
    await jsm.add_stream(StreamConfig(name="PYPUSH", subjects=["py.push.>"]))
    sub = await js.subscribe("py.push.>", durable="PUSHER", manual_ack=True)
    for i in range(1, 6):
        await js.publish(f"py.push.{i}", f"p{i}".encode())
    got = []
    for _ in range(5):
        m = await sub.next_msg(timeout=STEP)
        got.append((m.metadata.sequence.stream, m.data))
        await m.ack_sync()
    check(got == [(i, f"p{i}".encode()) for i in range(1, 6)], "push: all five in order")
    info = await jsm.consumer_info("PYPUSH", "PUSHER")
    check(info.config.deliver_subject is not None, "push consumer has a deliver_subject")
    check(info.num_ack_pending == 0 and info.num_pending == 0, "push: all acked")
    await sub.unsubscribe()


async def kv(nc, js):
    store = await js.create_key_value(bucket="PYKV", history=5)
    rev1 = await store.put("color", b"red")
    check(rev1 == 1, "put: revision 1")
    await store.put("shape", b"circle")
    e = await store.get("color")
    check(e.value == b"red" and e.revision == 1, "get: value and revision")
    rev3 = await store.update("color", b"green", last=1)
    check(rev3 == 3, "update with the right revision")
    try:
        await store.update("color", b"blue", last=1)
        raise Failed("update with a stale revision succeeded")
    except KeyWrongLastSequenceError:
        check(True, "update with a stale revision fails")

    # Another connection watches; this one writes.
    nc2 = await nats.connect(nc.connected_url.geturl(), allow_reconnect=False)
    store2 = await nc2.jetstream(timeout=STEP).key_value("PYKV")
    w = await store2.watchall()
    initial = []
    while True:
        e = await w.updates(timeout=STEP)
        if e is None:
            break
        initial.append((e.key, e.value, e.revision))
    check(initial == [("shape", b"circle", 2), ("color", b"green", 3)], "watch: current values first")

    await store.put("color", b"blue")  # 4
    await store.delete("shape")  # 5
    await store.put("size", b"xl")  # 6
    seen = []
    for _ in range(3):
        e = await w.updates(timeout=STEP)
        seen.append((e.key, e.value, e.revision, e.operation))
    check(
        seen
        == [
            ("color", b"blue", 4, None),
            ("shape", b"", 5, "DEL"),
            ("size", b"xl", 6, None),
        ],
        f"watch: every update in order ({seen})",
    )
    await w.stop()
    hist = await store.history("color")
    check([h.value for h in hist] == [b"red", b"green", b"blue"], "history of color")
    await nc2.close()


async def main(url):
    nc = await asyncio.wait_for(
        nats.connect(url, allow_reconnect=False, connect_timeout=STEP), STEP * 2
    )
    js = nc.jetstream(timeout=STEP)
    jsm = nc.jsm(timeout=STEP) if hasattr(nc, "jsm") else js
    await pull(js, jsm)
    await push(js, jsm)
    await kv(nc, js)
    await nc.close()
    print("all ok")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
