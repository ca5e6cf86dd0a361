#!/usr/bin/env python3
"""Authentication with the nats-py client against a running server.

Run by tests/python_clients.rs, which starts the servers:

    test_auth.py --userpass-url URL --user U --password P
                 [--limited-user U --limited-password P]
                 --token-url URL --token T

Checks, each bounded by a timeout: user/password and token logins,
pub/sub and request/reply over them, wrong password / wrong token / no
credentials rejected with 'Authorization Violation', and (with a limited
user) a publish permission violation reported to the error callback while
the connection stays usable. Exits 0 when every check passed.
"""

import argparse
import asyncio
import sys

import nats
import nats.errors

STEP = 5.0  # seconds for any single network step


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


async def connect(url, errors=None, **kw):
    async def error_cb(e):
        if errors is not None:
            errors.append(str(e))

    return await asyncio.wait_for(
        nats.connect(
            url,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=STEP,
            error_cb=error_cb,
            **kw,
        ),
        STEP * 2,
    )


async def expect_rejected(url, what, **kw):
    errors = []
    try:
        nc = await connect(url, errors, **kw)
    except asyncio.TimeoutError:
        raise Failed(f"{what}: connect timed out instead of being rejected")
    except Exception as e:  # nats-py raises nats.errors.Error here
        text = f"{e} {errors}"
        check("Authorization Violation" in text, f"{what}: rejected ({e})")
        return
    await nc.close()
    raise Failed(f"{what}: connect succeeded but must be rejected")


async def pubsub_and_request(url, label, **kw):
    a = await connect(url, **kw)
    b = await connect(url, **kw)
    try:
        # pub/sub across two connections
        sub = await a.subscribe(f"py.{label}.greet")
        await asyncio.wait_for(a.flush(), STEP)
        await b.publish(f"py.{label}.greet", b"hello")
        msg = await asyncio.wait_for(sub.next_msg(timeout=STEP), STEP * 2)
        check(msg.data == b"hello", f"{label}: pub/sub delivers")

        # request/reply: a answers, b asks
        async def answer(m):
            await m.respond(b"pong:" + m.data)

        await a.subscribe(f"py.{label}.svc", cb=answer)
        await asyncio.wait_for(a.flush(), STEP)
        rep = await b.request(f"py.{label}.svc", b"ping", timeout=STEP)
        check(rep.data == b"pong:ping", f"{label}: request/reply answers")
    finally:
        await a.close()
        await b.close()


async def limited(url, user, password):
    errors = []
    nc = await connect(url, errors, user=user, password=password)
    try:
        await nc.publish("py.denied", b"x")
        await asyncio.wait_for(nc.flush(), STEP)
        for _ in range(int(STEP / 0.05)):
            if errors:
                break
            await asyncio.sleep(0.05)
        # nats-py lower-cases the server's text
        want = "permissions violation for publish to \"py.denied\""
        check(any(want in e.lower() for e in errors), f"limited user: {want} ({errors})")
        sub = await nc.subscribe("py.ok")
        await nc.publish("py.ok", b"fine")
        msg = await asyncio.wait_for(sub.next_msg(timeout=STEP), STEP * 2)
        check(
            msg.data == b"fine" and nc.is_connected,
            "limited user: connection stays usable after the violation",
        )
    finally:
        await nc.close()


async def main(args):
    u, p = args.user, args.password
    await pubsub_and_request(args.userpass_url, "userpass", user=u, password=p)
    await expect_rejected(args.userpass_url, "wrong password", user=u, password=p + "-wrong")
    await expect_rejected(args.userpass_url, "unknown user", user=u + "-nobody", password=p)
    await expect_rejected(args.userpass_url, "no credentials")
    if args.limited_user:
        await limited(args.userpass_url, args.limited_user, args.limited_password)

    await pubsub_and_request(args.token_url, "token", token=args.token)
    await expect_rejected(args.token_url, "wrong token", token=args.token + "-wrong")
    await expect_rejected(args.token_url, "no token")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--userpass-url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--limited-user")
    ap.add_argument("--limited-password")
    ap.add_argument("--token-url", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(asyncio.wait_for(main(args), 60))
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("all nats-py auth checks passed", flush=True)
