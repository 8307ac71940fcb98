"""A small bot built on mautrix-python's appservice framework (PyPI `mautrix`), the library the
mautrix bridges are built on, driven by complement-tests/tests/appservice_mautrix.rs.

It serves the Application Service API on the port it is given, pings the homeserver, registers a
ghost user, sets its display name, joins the room it is given, and answers the first message
someone else sends there, as the ghost, with "echo: <body>". Progress goes to stdout as lines
starting with "@@ " that the test reads; anything else is the library's logging.
"""

import asyncio
import json
import logging
import sys

from mautrix.appservice import AppService
from mautrix.types import EventType


def report(what: str, value) -> None:
    print(f"@@ {what} {json.dumps(value)}", flush=True)


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    answered = asyncio.Event()
    appservice = AppService(
        server=cfg["homeserver"],
        domain=cfg["domain"],
        as_token=cfg["as_token"],
        hs_token=cfg["hs_token"],
        bot_localpart=cfg["bot_localpart"],
        id=cfg["id"],
        log="mautrix-bot",
    )
    ghost = None

    @appservice.matrix_event_handler
    async def on_event(event) -> None:
        if (
            event.type == EventType.ROOM_MESSAGE
            and event.room_id == cfg["room_id"]
            and event.sender != cfg["ghost"]
            and ghost is not None
        ):
            body = event.content.body
            report("received", {"sender": event.sender, "body": body})
            event_id = await ghost.send_text(event.room_id, f"echo: {body}")
            report("answered", {"event_id": event_id})
            answered.set()

    await appservice.start(host="127.0.0.1", port=cfg["port"])
    ghost = appservice.intent.user(cfg["ghost"])
    report("ping", {"duration_ms": await appservice.ping_self("mautrix-bot-ping")})
    await ghost.ensure_registered()
    await ghost.set_displayname("Echo Ghost")
    await ghost.ensure_joined(cfg["room_id"])
    report("joined", {"room_id": cfg["room_id"]})
    try:
        await asyncio.wait_for(answered.wait(), timeout=60)
    finally:
        await appservice.stop()


if __name__ == "__main__":
    asyncio.run(main())
