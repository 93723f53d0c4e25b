"""The token cache (sagas.api.authentication): a token's user is read once per
API_TOKEN_CACHE_SECONDS, a token or user changed in this process is forgotten at once, and a
refused token is never remembered."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sagas.api.authentication import TokenCache, cache
from tests.api.builders import client_for, user

pytestmark = pytest.mark.django_db


def token_reads(client: APIClient, times: int = 2) -> list[int]:
    """How many queries read the token table, request by request."""
    reads = []
    for _ in range(times):
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/orders/").status_code == 200
        reads.append(sum("authtoken_token" in q["sql"] for q in queries.captured_queries))
    return reads


def test_a_token_is_read_once_and_then_remembered() -> None:
    assert token_reads(client_for(user())) == [1, 0]


def test_with_the_cache_off_every_request_reads_the_token(settings: Settings) -> None:
    settings.API_TOKEN_CACHE_SECONDS = 0
    assert token_reads(client_for(user())) == [1, 1]


def test_a_deleted_token_is_refused_at_once() -> None:
    owner = user()
    client = client_for(owner)
    assert client.get("/api/orders/").status_code == 200

    Token.objects.get(user=owner).delete()

    refused = client.get("/api/orders/")
    assert refused.status_code == 401
    assert refused.json()["code"] == "authentication_failed"


def test_a_deactivated_user_is_refused_at_once() -> None:
    owner = user()
    client = client_for(owner)
    assert client.get("/api/orders/").status_code == 200

    owner.is_active = False
    owner.save()

    assert client.get("/api/orders/").status_code == 401


def test_a_refused_token_is_not_remembered() -> None:
    owner = user()
    key = "0" * 40
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/orders/").status_code == 401

    Token.objects.create(user=owner, key=key)

    assert client.get("/api/orders/").status_code == 200


def test_an_entry_expires_and_each_request_gets_its_own_copy_of_the_user() -> None:
    now = [100.0]
    tokens = TokenCache(clock=lambda: now[0])
    owner = user()
    token = Token.objects.create(user=owner)
    tokens.put(token.key, owner, token, seconds=5)

    first, second = tokens.get(token.key), tokens.get(token.key)
    assert first is not None and second is not None
    assert first[0].pk == second[0].pk == owner.pk
    assert first[0] is not second[0] and first[0] is not owner
    now[0] = 104.9
    assert tokens.get(token.key) is not None
    now[0] = 105.0
    assert tokens.get(token.key) is None


def test_the_cache_keeps_at_most_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from sagas.api import authentication

    monkeypatch.setattr(authentication, "MAX_ENTRIES", 2)
    owner = user()
    token = Token.objects.create(user=owner)
    for key in ("a", "b", "c"):
        cache.put(key, owner, token, seconds=60)
    assert cache.get("a") is None  # the least recently used went
    assert cache.get("b") is not None and cache.get("c") is not None
