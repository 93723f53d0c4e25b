"""Token authentication that remembers each token's user for a few seconds.

DRF's `TokenAuthentication` reads the token and its user on every request: a query, and a
transaction of its own, before the view's. `CachedTokenAuthentication` keeps what it read in this
process for API_TOKEN_CACHE_SECONDS (0 turns the cache off). A token deleted or replaced, or a
user saved (deactivated, say), in this process is forgotten at once; in another process it is
honoured for at most that many seconds more. Each request gets its own copy of the user.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

MAX_ENTRIES = 10_000  # tokens remembered at once; the least recently used go first


class TokenCache:
    """Token key -> (user, token, expiry), bounded, safe across the server's threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: OrderedDict[str, tuple[Any, Token, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, Token] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            user, token, expires = entry
            if self.clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return copy.copy(user), token

    def put(self, key: str, user: Any, token: Token, seconds: float) -> None:
        with self._lock:
            self._entries[key] = (copy.copy(user), token, self.clock() + seconds)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, user_pk: Any) -> None:
        """Drop every entry of this user (a user has one token: its entry is among them)."""
        with self._lock:
            for stale in [k for k, (user, _, _) in self._entries.items() if user.pk == user_pk]:
                del self._entries[stale]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = TokenCache()


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        seconds = settings.API_TOKEN_CACHE_SECONDS
        if seconds <= 0:
            return super().authenticate_credentials(key)
        found = cache.get(key)
        if found is not None:
            return found
        user, token = super().authenticate_credentials(key)  # refusals are not remembered
        cache.put(key, user, token, seconds)
        return user, token


def _token_changed(sender: Any, instance: Token, **kwargs: Any) -> None:
    cache.forget(instance.user_id)


def _user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    cache.forget(instance.pk)


def connect_signals() -> None:
    """Called from the sagas app's `ready()`."""
    for signal in (post_save, post_delete):
        signal.connect(_token_changed, sender=Token, dispatch_uid="token-cache-token")
        signal.connect(_user_changed, sender=get_user_model(), dispatch_uid="token-cache-user")
