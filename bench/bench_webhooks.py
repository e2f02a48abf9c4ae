"""Webhook deliveries accepted per second, with p50/p99 latency.

A separate process (this one) drives real HTTP at a daemon running in a child
process on SQLite: signed WhatsApp Cloud API deliveries (one customer message
each, a distinct wamid, ~700 bytes, ``X-Hub-Signature-256``) POSTed to
``/webhooks/wa`` by ``--concurrency`` keep-alive connections. The daemon
checks the signature on the raw bytes, splits the delivery and answers 200
only after the group commit of the intake (``synchronous=FULL``). After each
run the rows in ``inbound`` are counted: every acknowledged delivery is there.

Rows, all measured in the same run on the same machine:

* ``http floor``: uvicorn + Starlette answering 200 to the same POSTs, nothing
  else - what the HTTP stack itself costs;
* ``no store``: the daemon's full webhook path (routing, signature, split)
  with the intake replaced by a stub that stores nothing - the baseline;
* ``accept-only``: the real thing with ``pipeline.workers = 0`` (an instance
  that only takes deliveries; the pipeline runs elsewhere or catches up);
* ``full daemon``: the same with the pipeline classifying and routing every
  stored message while deliveries keep coming.

``--channel wechat`` sends WeChat Official Account pushes instead: one text
message each (a distinct MsgId), in safe mode (AES-encrypted with wechatpy,
``msg_signature`` in the query, ~600 bytes) to ``/webhooks/wx``, which checks
the signature and the age, decrypts and stores before answering ``success``.

``--channel sms``, ``x`` and ``qq`` send the other webhook channels'
deliveries, one customer message each, with the provider's signature: a
Twilio SMS form with ``X-Twilio-Signature`` (the daemon checks it with
twilio's ``RequestValidator``), an X Account Activity DM with
``x-twitter-webhooks-signature``, a QQ C2C message with its Ed25519
``X-Signature-Ed25519`` (all signed here before the run).

Target: at least 2,000 deliveries/s with p99 under 25 ms (accept-only).

    python bench/bench_webhooks.py [--deliveries 10000] [--concurrency 16] [--rounds 3]
                                   [--channel whatsapp|wechat|sms|x|qq]

(about 90 s with the defaults)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
APP_SECRET = "bench-app-secret-0123456789"
NUMBER_ID = "109876543210"
WX_APP_ID = "wx1234567890abcdef"
WX_TOKEN = "benchtoken"
WX_AES_KEY = "YmVuY2gtd2VjaGF0LWFlcy1rZXktMzItYnl0ZXMhISE"  # base64 of 32 bytes, no '='
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "bench-twilio-token"
SMS_URL = "https://bench.example/webhooks/sms"  # the URL Twilio would sign
X_SECRET = "bench-x-consumer-secret"
X_USER = "835740314006511618"
QQ_SECRET = "bench-qq-bot-secret-0123456789"
CHANNEL_PATHS = {
    "whatsapp": "/webhooks/wa",
    "wechat": "/webhooks/wx",
    "sms": "/webhooks/sms",
    "x": "/webhooks/x",
    "qq": "/webhooks/qq",
}
TARGET_RATE = 2000.0
TARGET_P99_MS = 25.0


# -- the server side (child process) ------------------------------------------------


def serve(mode: str, workdir: Path) -> None:
    """Run a server and print {"port": n} on stdout once it listens."""
    if mode == "floor":
        asyncio.run(_serve_floor())
    else:
        asyncio.run(_serve_daemon(mode, workdir))


async def _serve_floor() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"stored": 1, "duplicates": 0})

    app = Starlette(routes=[Route("/webhooks/{name}", ok, methods=["POST"])])
    cfg = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await task


async def _serve_daemon(mode: str, workdir: Path) -> None:
    from omnidesk import logging as odlog
    from omnidesk.app import Daemon
    from omnidesk.config import parse_config

    odlog.configure("warning", json=True)
    cfg = parse_config(
        {
            "daemon": {"data_dir": str(workdir / "data"), "log_level": "warning"},
            "storage": {"url": f"sqlite:///{workdir / 'bench.db'}"},
            "web": {"host": "127.0.0.1", "port": 0},
            "rules": {"dir": str(REPO / "rules"), "watch": False},
            "pipeline": {"workers": 1 if mode == "full" else 0, "processes": 0},
            "channels": [
                {
                    "name": "wa",
                    "type": "whatsapp",
                    "app_secret": APP_SECRET,
                    "verify_token": "bench",
                    "access_token": "bench",
                    "phone_number_id": NUMBER_ID,
                    "check_token": False,
                },
                {
                    "name": "wx",
                    "type": "wechat",
                    "app_id": WX_APP_ID,
                    "app_secret": "bench",
                    "token": WX_TOKEN,
                    "encoding_aes_key": WX_AES_KEY,
                },
                {
                    "name": "sms",
                    "type": "sms",
                    "account_sid": TWILIO_SID,
                    "auth_token": TWILIO_TOKEN,
                    "from_number": "+15005550006",
                    "webhook_url": SMS_URL,
                    "check_credentials": False,
                },
                {
                    "name": "x",
                    "type": "x",
                    "user_id": X_USER,
                    "consumer_key": "bench",
                    "consumer_secret": X_SECRET,
                    "access_token": "bench",
                    "access_token_secret": "bench",
                    "check_credentials": False,
                },
                {
                    "name": "qq",
                    "type": "qq",
                    "app_id": "102005999",
                    "app_secret": QQ_SECRET,
                    "check_credentials": False,
                },
            ],
        },
        base_dir=REPO,
    )
    daemon = Daemon(cfg)
    if mode == "nostore":

        async def stub(envelopes: Any) -> list[bool]:
            return [True] * len(envelopes)

        async def stub_one(envelope: Any) -> bool:
            return True

        daemon.intake.accept_many = stub  # type: ignore[method-assign]
        daemon.intake.accept = stub_one  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await daemon.start()
    except Exception as exc:
        # Say so and leave at once: threads of a half-started daemon would
        # otherwise keep this process (and the parent waiting on it) alive.
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(1)
    print(json.dumps({"port": daemon.web_port}), flush=True)
    await stop.wait()
    await daemon.stop()


# -- the client side -----------------------------------------------------------------


Delivery = tuple[str, bytes, dict[str, str]]  # path with query, body, headers


def deliveries(n: int, run: str, channel: str = "whatsapp") -> list[Delivery]:
    if channel == "wechat":
        return wechat_deliveries(n, run)
    if channel in ("sms", "x", "qq"):
        return [other_delivery(channel, i, run) for i in range(n)]
    return whatsapp_deliveries(n, run)


TEXTS = ["Hi, when will order {n} ship? Thanks", "你好，请问订单{n}什么时候发货？"]


def other_delivery(channel: str, i: int, run: str) -> Delivery:
    """One signed delivery of one customer message for the sms, x or qq channel."""
    text = TEXTS[i % len(TEXTS)].format(n=1000 + i)
    path = CHANNEL_PATHS[channel]
    if channel == "sms":
        from urllib.parse import urlencode

        from twilio.request_validator import RequestValidator

        sid = f"SM{run}{i:0{32 - len(run)}d}"
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": TWILIO_SID,
            "From": f"+4915{100000000 + (i * 7919) % 50000:09d}",
            "To": "+15005550006",
            "Body": text,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        sig = RequestValidator(TWILIO_TOKEN).compute_signature(SMS_URL, params)
        headers = {"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}
        return path, urlencode(params).encode(), headers
    if channel == "x":
        from omnidesk.channels.x import SIGNATURE_HEADER, sign

        sender = str(272953809 + i % 50000)
        event_id = str(int.from_bytes(run.encode(), "big") % 10**6 * 10**12 + i)
        body = {
            "for_user_id": X_USER,
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": event_id,
                    "created_timestamp": str(int(time.time() * 1000)),
                    "message_create": {
                        "target": {"recipient_id": X_USER},
                        "sender_id": sender,
                        "message_data": {"text": text, "entities": {"urls": []}},
                    },
                }
            ],
            "users": {sender: {"id": sender, "name": f"Customer {i}", "screen_name": f"c{i}"}},
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {SIGNATURE_HEADER: sign(X_SECRET, raw), "Content-Type": "application/json"}
        return path, raw, headers
    from datetime import UTC, datetime

    from omnidesk.channels.qq import SIGNATURE_HEADER as QQ_SIGNATURE
    from omnidesk.channels.qq import TIMESTAMP_HEADER

    body = {
        "op": 0,
        "id": f"C2C_MESSAGE_CREATE:{run}{i}",
        "t": "C2C_MESSAGE_CREATE",
        "d": {
            "author": {"user_openid": f"E4F4AEA33253A2797FB897C5{i % 50000:08X}"},
            "content": text,
            "id": f"ROBOT1.0_{run}{i:08d}",
            "timestamp": datetime.now(UTC).isoformat(),
        },
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    ts = str(int(time.time()))
    sig = _qq_key().sign(ts.encode() + raw).hex()
    return path, raw, {QQ_SIGNATURE: sig, TIMESTAMP_HEADER: ts, "Content-Type": "application/json"}


_QQ_KEY: list[Any] = []


def _qq_key() -> Any:
    if not _QQ_KEY:
        from omnidesk.channels.qq import signing_key

        _QQ_KEY.append(signing_key(QQ_SECRET))
    return _QQ_KEY[0]


def wechat_deliveries(n: int, run: str) -> list[Delivery]:
    """Official Account pushes in safe mode, encrypted and signed as WeChat does."""
    from urllib.parse import urlencode

    import xmltodict
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import WeChatSigner

    crypto = WeChatCrypto(WX_TOKEN, WX_AES_KEY, WX_APP_ID)
    texts = ["你好，请问订单{n}什么时候发货？", "我要退货，订单{n}", "Where is order {n}?"]
    now = str(int(time.time()))
    first_id = int.from_bytes(run.encode(), "big") % 10**6 * 10**9
    out = []
    for i in range(n):
        openid = f"oUpF8uMuAJO_M2pxb1Q9zN{(i * 7919) % 50000:06d}"
        xml = (
            f"<xml><ToUserName>gh_0123456789ab</ToUserName><FromUserName>{openid}"
            f"</FromUserName><CreateTime>{now}</CreateTime><MsgType>text</MsgType>"
            f"<Content>{texts[i % len(texts)].format(n=1000 + i)}</Content>"
            f"<MsgId>{first_id + i}</MsgId></xml>"
        )
        nonce = f"{run}{i:08d}"
        packed = xmltodict.parse(crypto.encrypt_message(xml, nonce, now))["xml"]
        signer = WeChatSigner()
        signer.add_data(WX_TOKEN, now, nonce)
        query = urlencode(
            {
                "signature": signer.signature,
                "timestamp": now,
                "nonce": nonce,
                "openid": openid,
                "encrypt_type": "aes",
                "msg_signature": packed["MsgSignature"],
            }
        )
        body = (
            "<xml><ToUserName>gh_0123456789ab</ToUserName>"
            f"<Encrypt>{packed['Encrypt']}</Encrypt></xml>"
        ).encode()
        out.append((f"{CHANNEL_PATHS['wechat']}?{query}", body, {"Content-Type": "text/xml"}))
    return out


def whatsapp_deliveries(n: int, run: str) -> list[Delivery]:
    from omnidesk.channels.meta.webhook import SIGNATURE_HEADER, sign

    texts = [
        "Hi, when will order {n} ship? Thanks",
        "This is unacceptable, I want a refund for order {n}",
        "Can I change the delivery address for order {n}?",
        "你好，请问订单{n}什么时候发货？",
    ]
    now = int(time.time())
    out = []
    for i in range(n):
        wa_id = f"4915{100000000 + (i * 7919) % 50000:09d}"
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550001111",
                                    "phone_number_id": NUMBER_ID,
                                },
                                "contacts": [
                                    {"profile": {"name": f"Customer {i}"}, "wa_id": wa_id}
                                ],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": f"wamid.HBgL{run}{i:08d}AgASGBQzRUIwQjE",
                                        "timestamp": str(now),
                                        "type": "text",
                                        "text": {"body": texts[i % len(texts)].format(n=1000 + i)},
                                    }
                                ],
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {SIGNATURE_HEADER: sign(APP_SECRET, raw), "Content-Type": "application/json"}
        out.append((CHANNEL_PATHS["whatsapp"], raw, headers))
    return out


async def drive(
    port: int, items: list[Delivery], concurrency: int
) -> tuple[float, list[float], int]:
    """Send everything; returns (seconds, latencies in ms, non-200 answers)."""
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    errors = 0
    it = iter(items)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)  # a stalled server fails the run, not hangs it
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
            for path, body, headers in it:
                t0 = time.perf_counter()
                url = base + path
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t
    return elapsed, latencies, errors


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def stored_rows(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM inbound").fetchone()[0])


def run_mode(
    mode: str, n: int, warmup: int, concurrency: int, channel: str = "whatsapp"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        work = Path(tmp)
        log = (work / "server.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, "--workdir", str(work)],
            stdout=subprocess.PIPE,
            stderr=log,  # a file: a full pipe would stall the server
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else ""
            answer = json.loads(line) if line.startswith("{") else {}
            if "port" not in answer:
                log.flush()
                why = answer.get("error") or (work / "server.log").read_text()[-2000:]
                raise RuntimeError(f"{mode} server did not start: {why}")
            port = answer["port"]
            asyncio.run(drive(port, deliveries(warmup, f"W{mode[:2]}", channel), concurrency))
            items = deliveries(n, f"R{mode[:2]}", channel)
            elapsed, lat, errors = asyncio.run(drive(port, items, concurrency))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        rows = stored_rows(work / "bench.db") if mode in ("accept", "full") else None
    return {
        "mode": mode,
        "rate": n / elapsed,
        "p50": statistics.median(lat),
        "p99": pct(lat, 99),
        "max": max(lat),
        "errors": errors,
        "stored": rows,
        "expected": n + warmup,
    }


LABELS = {
    "floor": "http floor (uvicorn+starlette, 200)",
    "nostore": "no store (webhook path, stub intake)",
    "accept": "accept-only (durable, pipeline elsewhere)",
    "full": "full daemon (pipeline running too)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deliveries", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--modes", default="floor,nostore,accept,full")
    ap.add_argument("--channel", choices=sorted(CHANNEL_PATHS), default="whatsapp")
    ap.add_argument("--rounds", type=int, default=3, help="median of this many runs per mode")
    ap.add_argument("--serve", choices=sorted(LABELS), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.workdir)
        return

    from benchrows import record
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    modes = args.modes.split(",")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(modes) * args.rounds)
        # Rounds interleave the modes, so a burst of other load on the machine
        # hits all of them alike; each row is its mode's median round.
        for _ in range(args.rounds):
            for mode in modes:
                progress.update(task, description=f"measuring {LABELS[mode]}")
                runs[mode].append(
                    run_mode(mode, args.deliveries, args.warmup, args.concurrency, args.channel)
                )
                progress.advance(task)
    results = [sorted(runs[m], key=lambda r: r["rate"])[len(runs[m]) // 2] for m in modes]

    base = next((r for r in results if r["mode"] == "nostore"), results[0])
    what = {
        "whatsapp": "WhatsApp deliveries",
        "wechat": "WeChat safe-mode pushes",
        "sms": "Twilio SMS webhooks",
        "x": "X Account Activity DMs",
        "qq": "QQ C2C callbacks (Ed25519)",
    }
    table = Table(
        title=f"Webhook deliveries over HTTP, {args.deliveries} signed {what[args.channel]},"
        f" {args.concurrency} connections, SQLite synchronous=FULL, {os.cpu_count()} CPUs,"
        f" median of {args.rounds} rounds"
    )
    for col in (
        "server",
        "deliveries/s",
        "vs no store",
        "p50 ms",
        "p99 ms",
        "max ms",
        "non-200",
        "rows stored",
    ):
        table.add_column(col, justify="left" if col == "server" else "right")
    for r in results:
        stored = "-" if r["stored"] is None else f"{r['stored']}/{r['expected']}"
        table.add_row(
            LABELS[r["mode"]],
            f"{r['rate']:,.0f}",
            f"{r['rate'] / base['rate']:.2f}x",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['max']:.1f}",
            str(r["errors"]),
            stored,
        )
        record(
            "webhooks" if args.channel == "whatsapp" else f"webhooks-{args.channel}",
            f"{LABELS[r['mode']]}, p99 {r['p99']:.1f} ms",
            r["rate"],
            "deliveries/s",
            baseline=LABELS[base["mode"]],
            baseline_value=base["rate"],
            ratio=r["rate"] / base["rate"],
        )
    console.print(table)
    accept = next((r for r in results if r["mode"] == "accept"), None)
    if accept is not None:
        ok = accept["rate"] >= TARGET_RATE and accept["p99"] < TARGET_P99_MS
        console.print(
            f"target >= {TARGET_RATE:,.0f}/s with p99 < {TARGET_P99_MS:.0f} ms (accept-only):"
            f" {'met' if ok else 'MISSED'}"
        )
        if accept["stored"] != accept["expected"]:
            console.print("[red]acknowledged deliveries missing from the inbound table[/red]")


if __name__ == "__main__":
    main()
