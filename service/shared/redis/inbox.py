"""The control inbox: other instances ask this one to cancel or move a session it owns.

They push onto this instance's list (``ask``); it is polled without blocking, so no blocking
command ever holds a connection here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from service.shared.redis import scripts
from service.shared.redis.failures import BACKOFF_MAX_S, RedisUnavailable

if TYPE_CHECKING:
    from service.shared.redis.hub import RedisHub

CONTROL_POLL_S = 0.05
MAX_MESSAGES = 64  # per poll


class Inbox:
    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub
        self.link = hub.lean_link()

    async def ask(self, holder: str, command: str, session_id: str) -> None:
        """Ask the instance ``holder`` to ``cancel`` or ``move`` a session it owns."""
        hub = self.hub
        key = scripts.control_key(holder)
        with hub.translated("RPUSH"):  # the pipeline goes out as its block ends: a failure surfaces there
            async with hub.client.pipeline(transaction=False) as pipe:
                pushed = pipe.rpush(key, [f"{command} {session_id}"])
                pipe.expire(key, 60)
        await hub.call("RPUSH", pushed)

    async def run(self) -> None:
        hub = self.hub
        key = scripts.control_key(hub.instance)
        while True:
            await trio.sleep(CONTROL_POLL_S)
            try:
                messages = await hub.call("LPOP", self.link.call("LPOP", key, MAX_MESSAGES))
            except RedisUnavailable:
                await trio.sleep(BACKOFF_MAX_S)
                continue
            for message in messages if isinstance(messages, list) else ():
                if not isinstance(message, bytes):
                    continue
                command, _, session_id = message.decode().partition(" ")
                if hub.on_control is not None:
                    await hub.on_control(command, session_id)
