"""nats-py against broker-edge with nkey and JWT (creds file) credentials.

Usage: test_nkey_creds.py URL --seed FILE | --creds FILE
Exits 0 when a round trip works with the given credentials and a connection
without them is refused.
"""
import argparse
import asyncio
import sys

import nats
from nats.errors import Error as NatsError


async def round_trip(nc, subject):
    got = asyncio.get_running_loop().create_future()

    async def handler(msg):
        if not got.done():
            got.set_result(msg.data)

    await nc.subscribe(subject, cb=handler)
    await nc.flush()
    await nc.publish(subject, b"from python")
    data = await asyncio.wait_for(got, 5)
    assert data == b"from python", data


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seed")
    p.add_argument("--creds")
    a = p.parse_args()
    opts = {"servers": [a.url], "allow_reconnect": False, "connect_timeout": 5}
    if a.seed:
        nc = await nats.connect(nkeys_seed=a.seed, **opts)
    else:
        nc = await nats.connect(user_credentials=a.creds, **opts)
    await round_trip(nc, "py.nkey" if a.seed else "py.creds")
    await nc.close()
    # Without credentials: refused.
    try:
        nc = await nats.connect(**opts)
        await nc.close()
        print("connected without credentials", file=sys.stderr)
        sys.exit(1)
    except (NatsError, OSError, asyncio.TimeoutError):
        pass
    print("ok")


asyncio.run(main())
