#!/usr/bin/env python3
"""JetStream streams with nats-py, run by tests/python_clients.rs:

    test_jetstream.py URL

add_stream, publish with PubAck (sequence, duplicate via Nats-Msg-Id,
headers), stream_info, get_msg (by sequence, last by subject, direct),
get_last_msg, delete_msg, purge_stream, update_stream, streams_info,
delete_stream, account_info, and the errors for a missing stream/message.
Exits 0 on success.
"""

import asyncio
import sys

import nats
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

STEP = 5.0


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


async def expect_not_found(coro, what):
    try:
        await coro
    except NotFoundError as e:
        check(True, f"{what}: NotFoundError ({e.err_code} {e.description})")
        return e
    raise Failed(f"{what}: expected NotFoundError")


async def main(url):
    nc = await asyncio.wait_for(
        nats.connect(url, allow_reconnect=False, connect_timeout=STEP), STEP * 2
    )
    js = nc.jetstream(timeout=STEP)
    jsm = nc.jsm(timeout=STEP) if hasattr(nc, "jsm") else js

    acc = await jsm.account_info()
    check(acc.streams == 0, "account_info: no streams yet")

    si = await jsm.add_stream(
        StreamConfig(
            name="PYORDERS",
            subjects=["py.orders.>"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_msgs=100,
            allow_direct=True,
        )
    )
    check(si.config.name == "PYORDERS", "add_stream returns the config")
    check(si.config.subjects == ["py.orders.>"], "subjects as given")
    check(si.config.max_msgs == 100, "max_msgs as given")
    check(si.state.messages == 0 and si.state.last_seq == 0, "empty state")

    for i in range(1, 4):
        ack = await js.publish(f"py.orders.{i}", f"order-{i}".encode())
        check(ack.stream == "PYORDERS" and ack.seq == i, f"PubAck seq {i}")
        check(not ack.duplicate, f"PubAck {i} not a duplicate")

    ack = await js.publish(
        "py.orders.hdr", b"with headers", headers={"Nats-Msg-Id": "py-1", "X-Py": "yes"}
    )
    check(ack.seq == 4, "PubAck seq 4")
    dup = await js.publish(
        "py.orders.hdr", b"again", headers={"Nats-Msg-Id": "py-1"}
    )
    check(dup.duplicate and dup.seq == 4, "Nats-Msg-Id duplicate: same seq, duplicate true")
    # Expected stream in the publish call.
    ack = await js.publish("py.orders.1", b"second", stream="PYORDERS")
    check(ack.seq == 5, "publish with stream= expectation")
    try:
        await js.publish("py.orders.1", b"x", stream="OTHER")
        raise Failed("publish with the wrong stream= should fail")
    except nats.js.errors.APIError as e:
        check(e.err_code == 10060, f"wrong expected stream: err_code {e.err_code}")

    info = await jsm.stream_info("PYORDERS")
    check(info.state.messages == 5, "stream_info: 5 messages")
    check(info.state.first_seq == 1 and info.state.last_seq == 5, "stream_info seqs")

    m = await jsm.get_msg("PYORDERS", seq=2)
    check(m.subject == "py.orders.2" and m.data == b"order-2", "get_msg by seq")
    check(m.seq == 2, "get_msg seq field")
    m = await jsm.get_msg("PYORDERS", seq=4)
    check(m.headers is not None and m.headers.get("X-Py") == "yes", "get_msg headers")
    check(m.headers.get("Nats-Msg-Id") == "py-1", "get_msg Nats-Msg-Id header")
    m = await jsm.get_last_msg("PYORDERS", "py.orders.1")
    check(m.seq == 5 and m.data == b"second", "get_last_msg by subject")
    m = await jsm.get_msg("PYORDERS", seq=3, direct=True)
    check(m.subject == "py.orders.3" and m.data == b"order-3", "direct get by seq")
    m = await jsm.get_msg("PYORDERS", subject="py.orders.hdr", direct=True)
    check(m.seq == 4 and m.data == b"with headers", "direct get last by subject")

    await expect_not_found(jsm.get_msg("PYORDERS", seq=99), "get_msg missing seq")

    ok = await jsm.delete_msg("PYORDERS", 2)
    check(ok, "delete_msg")
    e = await expect_not_found(jsm.get_msg("PYORDERS", seq=2), "get_msg deleted seq")
    check(e.err_code == 10037, "deleted message: err_code 10037")

    si = await jsm.update_stream(
        StreamConfig(
            name="PYORDERS",
            subjects=["py.orders.>", "py.returns"],
            storage=StorageType.FILE,
            max_msgs=2,
            allow_direct=True,
        )
    )
    check(si.config.max_msgs == 2, "update_stream max_msgs")
    check("py.returns" in si.config.subjects, "update_stream subjects")
    check(si.state.messages == 2, "update_stream trimmed to 2 messages")
    ack = await js.publish("py.returns", b"ret")
    check(ack.seq == 6, "publish to the added subject")

    streams = await jsm.streams_info()
    check([s.config.name for s in streams] == ["PYORDERS"], "streams_info lists it")

    ok = await jsm.purge_stream("PYORDERS")
    check(ok, "purge_stream")
    info = await jsm.stream_info("PYORDERS")
    check(info.state.messages == 0 and info.state.first_seq == 7, "purged state")

    ok = await jsm.delete_stream("PYORDERS")
    check(ok, "delete_stream")
    e = await expect_not_found(jsm.stream_info("PYORDERS"), "stream_info after delete")
    check(e.err_code == 10059, "deleted stream: err_code 10059")
    acc = await jsm.account_info()
    check(acc.streams == 0, "account_info: no streams left")

    await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
    except Failed as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
