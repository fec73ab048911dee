"""Shared state: what every instance of a deployment must agree on.

Each part has a small interface (``base``) with an in-memory implementation (``memory``,
one process, today's behaviour and the default) and a Redis one (``redis_*``, chosen by
``RESERVE_REDIS_URL``). Sessions and handlers do not know which they run on.
"""
