"""Request body bounds per route: ``RESERVE_MAX_BODY_BYTES`` for JSON, ``RESERVE_MAX_UPLOAD_BYTES``
for audio uploads. Quart sizes each request's body buffer from ``MAX_CONTENT_LENGTH`` before any
handler runs, so the app is configured with the larger bound and every other route lowers it
here, before a byte is read (an oversized declared length is refused at once)."""

from __future__ import annotations

from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

UPLOAD_PATHS = frozenset({"/v1/audio/transcriptions"})


def bound_body(max_body_bytes: int, max_upload_bytes: int) -> None:
    if request.path in UPLOAD_PATHS:  # the handler reads the body and answers 413 in its own shape
        request.max_content_length = max_upload_bytes  # what the multipart parser enforces over the body
        return
    limit = max_body_bytes
    request.max_content_length = limit
    body = request.body
    body._max_content_length = limit  # what the body buffer enforces (Quart has no public setter)
    declared = request.content_length
    if (declared is not None and declared > limit) or len(body._data) > limit:
        raise RequestEntityTooLarge()
