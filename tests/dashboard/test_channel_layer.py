"""The Redis channel layer as configured: a consumer with nothing to receive keeps waiting."""

from __future__ import annotations

import asyncio
import os

import pytest
from channels_redis.core import RedisChannelLayer

from sagaproject.settings import channel_layers

REDIS_URL = os.environ.get("DASHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.mark.asyncio
async def test_an_idle_consumer_outlasts_the_layers_five_second_wait() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    config = channel_layers(REDIS_URL)["default"]["CONFIG"]
    layer = RedisChannelLayer(**config)
    channel = await layer.new_channel()

    with pytest.raises(asyncio.TimeoutError):  # not redis.exceptions.TimeoutError
        await asyncio.wait_for(layer.receive(channel), 7)
    await layer.close_pools()
