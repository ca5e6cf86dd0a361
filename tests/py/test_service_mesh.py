#!/usr/bin/env python3
"""The service-mesh fixture (tests/configs/service-mesh.conf, bcrypt users)
with the nats-py client, run by tests/python_clients.rs:

    test_service_mesh.py URL

fluo-bff hands a job to fluo-workers (jobs.>), the workers signal back
(signals.>), the workers may not publish jobs.> (permission error, the
connection stays), and a wrong password is rejected. Exits 0 on success.
"""

import asyncio
import sys

import nats

STEP = 5.0
BFF = ("fluo-bff", "fluo-bff-secret")
WORKERS = ("fluo-workers", "fluo-workers-secret")


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


async def connect(url, user, password, errors=None):
    async def error_cb(e):
        if errors is not None:
            errors.append(str(e))

    return await asyncio.wait_for(
        nats.connect(
            url,
            user=user,
            password=password,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=STEP,
            error_cb=error_cb,
        ),
        STEP * 2,
    )


async def main(url):
    worker_errors = []
    bff = await connect(url, *BFF)
    workers = await connect(url, *WORKERS, errors=worker_errors)
    try:
        jobs = await workers.subscribe("jobs.>")
        await asyncio.wait_for(workers.flush(), STEP)
        signals = await bff.subscribe("signals.>")
        await asyncio.wait_for(bff.flush(), STEP)

        await bff.publish("jobs.resize", b"img-42")
        msg = await asyncio.wait_for(jobs.next_msg(timeout=STEP), STEP * 2)
        check(
            (msg.subject, msg.data) == ("jobs.resize", b"img-42"),
            "bff -> workers on jobs.>",
        )

        await workers.publish("signals.done", b"img-42 done")
        msg = await asyncio.wait_for(signals.next_msg(timeout=STEP), STEP * 2)
        check(
            (msg.subject, msg.data) == ("signals.done", b"img-42 done"),
            "workers -> bff on signals.>",
        )

        # Workers may not publish jobs: the server reports it, the
        # message goes nowhere, the connection stays.
        await workers.publish("jobs.forged", b"x")
        await asyncio.wait_for(workers.flush(), STEP)
        for _ in range(int(STEP / 0.05)):
            if worker_errors:
                break
            await asyncio.sleep(0.05)
        want = 'permissions violation for publish to "jobs.forged"'
        check(
            any(want in e.lower() for e in worker_errors),
            f"workers: {want} ({worker_errors})",
        )
        await workers.publish("signals.still-here", b"y")
        msg = await asyncio.wait_for(signals.next_msg(timeout=STEP), STEP * 2)
        check(msg.subject == "signals.still-here", "workers' connection stays usable")
        try:
            extra = await jobs.next_msg(timeout=0.2)
            raise Failed(f"forged job was delivered: {extra.subject}")
        except nats.errors.TimeoutError:
            print("ok: forged job not delivered", flush=True)
    finally:
        await bff.close()
        await workers.close()

    try:
        nc = await connect(url, BFF[0], WORKERS[1])
    except Exception as e:
        check("Authorization Violation" in str(e), f"wrong password rejected ({e})")
    else:
        await nc.close()
        raise Failed("bff with the workers' password connected")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("all nats-py service-mesh checks passed", flush=True)
