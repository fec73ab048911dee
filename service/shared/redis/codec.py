"""What Redis holds and answers, as the hub's types: an event as a stream entry and back,
XREAD's reply (RESP2) checked as it is taken apart, a script called by its digest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coredis.commands.script import Script

from service.events import sse
from service.events.log import Event
from service.shared.redis import resp

StreamEntries = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


async def eval_script(
    link: resp.RespConnection, script: Script[bytes], keys: list[str], args: list[str | bytes]
) -> resp.Reply:
    """``script`` by its digest on ``link``, loaded first where Redis lacks it (a restart)."""
    request = ("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        return await link.call(*request)
    except resp.ReplyError as exc:
        if not str(exc).startswith("NOSCRIPT"):
            raise
    await link.call("SCRIPT", "LOAD", script.script)
    return await link.call(*request)


async def eval_per_session(
    link: resp.RespConnection, what: str, script: Script[bytes], keys: list[str], args: list[str | bytes], sessions: int
) -> list[resp.Reply]:
    """A script that answers one reply per session (APPEND, RENEW): its answer, checked to be that."""
    replies = await eval_script(link, script, keys, args)
    if not isinstance(replies, list) or len(replies) != sessions:
        raise resp.ProtocolError(f"the {what} script answered {replies!r:.80}")
    return replies


def event(identifier: bytes, fields: Mapping[bytes, bytes]) -> Event:
    """A stream entry (id ``0-<event id>``, fields ``n``: name, ``d``: the JSON) as an event."""
    event_id = int(identifier.split(b"-", 1)[1])
    name = fields[b"n"].decode()
    return Event(event_id, name, sse.frame(event_id, name, fields[b"d"]))


def stream_entries(reply: resp.Reply) -> StreamEntries:
    """XREAD's reply in RESP2 (``[[key, [[id, [field, value, …]], …]], …]``, or nil when the
    block ran out), checked, with each entry's fields as a dict."""
    if reply is None:
        return []
    raw: Any = reply  # checked as it is taken apart
    try:
        streams: StreamEntries = []
        for key, entries in raw:
            parsed = []
            for identifier, flat in entries:
                if not isinstance(identifier, bytes) or not all(isinstance(item, bytes) for item in flat):
                    raise TypeError("not a bulk string")
                parsed.append((identifier, dict(zip(flat[::2], flat[1::2], strict=True))))
            if not isinstance(key, bytes):
                raise TypeError("not a bulk string")
            streams.append((key, parsed))
        return streams
    except (TypeError, ValueError) as exc:
        raise resp.ProtocolError(f"XREAD answered {reply!r:.80}") from exc
