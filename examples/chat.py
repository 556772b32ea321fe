"""A terminal chat on a hyperdrive's topic with peersockets, against JavaScript or Python peers.

Run it together with the JavaScript example, from the repository root, in two terminals:

    node examples/js/chat.mjs --listen 127.0.0.1:4000          # creates a drive, prints its key
    python examples/chat.py KEY --connect 127.0.0.1:4000       # KEY: the drive key printed above

or the other way round (the JavaScript side opens the drive by its key):

    python examples/chat.py KEY --listen 127.0.0.1:4000        # KEY: e.g. from `peersockets keygen`
    node examples/js/chat.mjs --key KEY --connect 127.0.0.1:4000

With neither --listen nor --connect, the peers find each other on the Hyperswarm DHT, as
hyperswarm apps do: the public DHT (needs the internet), or the one --bootstrap names, such
as a local network from `peersockets dht-node --port 49737`:

    python examples/chat.py KEY                                # in two terminals
    python examples/chat.py KEY --bootstrap 127.0.0.1:49737    # or on the local DHT

Each line typed is sent to every peer of the drive; Ctrl-D or Ctrl-C quits. Joins, leaves and
messages are printed as `peersockets chat` and examples/js/chat.mjs print them:

    * peer 1 cd85ce91 joined (1 peer connected)
    [peer 1 cd85ce91] hello
    * peer 1 cd85ce91 left (0 peers connected); waiting for peers
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading

from peersockets import Peersockets, PeersocketsError, Swarm
from peersockets.hyperswarm import DiscoveryEvent


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def printable(message: bytes) -> str:
    """A message as one terminal-safe line: control characters are shown escaped (\\x1b)."""
    text = message.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def connected(count: int) -> str:
    return f"{count} peer{'' if count == 1 else 's'} connected"


def read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes | None]) -> None:
    """Runs in a thread, so that waiting for input never blocks the event loop.

    os.read rather than sys.stdin: it holds no lock that would upset the exit on Ctrl-C.
    """
    rest = b""
    while chunk := os.read(0, 65536):  # b"" at end of input
        *complete, rest = (rest + chunk).split(b"\n")
        for line in complete:
            loop.call_soon_threadsafe(lines.put_nowait, line)
    if rest:
        loop.call_soon_threadsafe(lines.put_nowait, rest)
    loop.call_soon_threadsafe(lines.put_nowait, None)


def dht_progress(swarm: Swarm) -> None:
    """Say what the swarm's DHT discovery does while we wait for peers."""
    lookups: list[int] = []  # peers found by each lookup (one now, then every 10-12 minutes)

    def show(event: DiscoveryEvent) -> None:
        who = event.public_key.hex()[:8] if event.public_key else ""
        text = {
            "started": event.detail,  # "N nodes known"
            "bootstrap-failed": "no bootstrap node answered: still trying"
            f" ({event.detail.rpartition('trying ')[2]})",  # "again in 5 s"
            "announced": "announced: others can find us now",
            "connecting": f"connecting to {who}...",
            "connected": f"connected to {who}",
            "connect-failed": f"could not connect to {who} ({event.detail})",
            "error": f"error: {event.detail}",
        }.get(event.kind)
        if event.kind == "lookup":
            found = int(event.detail)
            if not lookups and not found and not swarm.connections:
                text = "nobody has joined this drive yet; waiting for peers (they will find us)"
            elif found and found != (lookups or [0])[-1]:
                text = f"found {found} peer{'s' if found > 1 else ''}"
            lookups.append(found)
        if text:
            print(f"dht:        {text}", flush=True)

    swarm.add_discovery_listener(show)
    logging.getLogger("peersockets.dht").setLevel(logging.ERROR)  # the lines above say it


async def chat(args: argparse.Namespace) -> None:
    # No address to listen on or dial: find the drive's peers on the DHT (the public one
    # unless --bootstrap names another). Addresses alone: TCP only, the DHT never used.
    use_dht = bool(args.bootstrap) or not (args.listen or args.connect)
    async with Swarm(dht=use_dht, bootstrap=args.bootstrap or None) as swarm:
        print(f"public key: {swarm.public_key.hex()}", flush=True)
        if args.listen:
            host, port = await swarm.listen(*args.listen)
            print(f"listening:  {host}:{port}", flush=True)
        if use_dht:
            dht_progress(swarm)
            where = f"the DHT (bootstrap {', '.join(args.bootstrap)})" if args.bootstrap else "the public DHT"
            print(f"dht:        looking up the drive on {where}...", flush=True)
        async with Peersockets(swarm, args.drive_key) as ps:  # joins the drive (on the DHT too)
            events, topic = ps.watch(), ps.join(args.topic)  # before connecting: nothing is missed
            for host, port in args.connect:
                await swarm.connect(host, port)
                print(f"connected:  {host}:{port}", flush=True)

            # said when the last peer leaves: can anyone still reach us?
            alone = (
                "waiting for peers (it will be found again when it returns)" if use_dht
                else "waiting for peers" if args.listen
                else "no peer can reach this chat now (it neither listens nor uses the DHT)"
            )
            closing = False  # our own close makes leaves that are not news

            async def show_events() -> None:
                async for ev in events:  # "join" or "leave"
                    if closing:
                        continue
                    n = len(ps.peers)
                    verb = "joined" if ev.type == "join" else "left"
                    then = f"; {alone}" if ev.type == "leave" and n == 0 else ""
                    print(f"* peer {ev.peer_id} {ev.public_key.hex()[:8]} {verb} ({connected(n)}){then}", flush=True)

            async def show_messages() -> None:
                async for msg in topic:
                    print(f"[peer {msg.peer_id} {msg.public_key.hex()[:8]}] {printable(msg.message)}", flush=True)

            shown = [asyncio.create_task(show_events()), asyncio.create_task(show_messages())]
            lines: asyncio.Queue[bytes | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            threading.Thread(target=read_stdin, args=(loop, lines), daemon=True).start()
            try:
                while (line := await lines.get()) is not None:  # None at end of input (Ctrl-D)
                    line = line.rstrip(b"\r")
                    # to every peer of the drive; one that leaves meanwhile is skipped
                    if line.strip() and not await topic.broadcast(line):
                        print("(nobody has joined the drive yet: the message was not sent)", file=sys.stderr)
            finally:  # Ctrl-D, or Ctrl-C cancelling us: our own leave is not news
                closing = True
        await asyncio.gather(*shown)  # closing the Peersockets ended both loops


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Chat with the peers of a hyperdrive.")
    parser.add_argument("drive_key", help="64 hex, 52 z-base-32 characters or hyper://KEY/")
    parser.add_argument("--listen", type=address, metavar="HOST:PORT")
    parser.add_argument("--connect", type=address, action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT",
                        help="a node of the DHT to use instead of the public DHT's")
    parser.add_argument("--topic", default="chat")
    try:
        asyncio.run(chat(parser.parse_args()))
    except KeyboardInterrupt:  # Ctrl-C
        pass
    except (PeersocketsError, OSError) as exc:  # e.g. nothing listens at --connect's address
        sys.exit(f"chat.py: error: {exc}")
