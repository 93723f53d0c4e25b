"""The Idempotency-Key header and the digest that tells "the same request" from a different one."""

from __future__ import annotations

import json
import re
from typing import Any

from django.utils.crypto import salted_hmac
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from sagas.api.errors import invalid

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency_key(request: Request) -> str | None:
    """The request's key, None if it has none. Raises a 400 for a malformed key."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if len(key) > MAX_KEY_LENGTH:
        raise invalid({HEADER: [f"At most {MAX_KEY_LENGTH} characters."]})
    if not _KEY.fullmatch(key):
        raise invalid({HEADER: ["1 to 255 visible ASCII characters, no spaces."]})
    return key


def request_digest(data: Any) -> str:
    """A keyed digest of the request body, order of object keys aside.

    Keyed (HMAC with SECRET_KEY), because the body holds a card number: a plain hash of a card
    number can be reversed by trying every number.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return salted_hmac("sagas.api.idempotency", canonical, algorithm="sha256").hexdigest()


IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    description=(
        "Makes the request safe to retry (Stripe's semantics, scoped per user): the same key "
        "with the same body returns the first answer (status and body, same `order_id`) and "
        "starts nothing new, even when both requests arrive at once; the same key with a "
        "different body answers 422. Answers 400 are not stored: fix the body and retry with "
        "the same key. Use a random UUID per order."
    ),
)

REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed",
    {"type": "string", "enum": ["true"]},
    OpenApiParameter.HEADER,
    description="Present when this answer is the stored first answer to the Idempotency-Key.",
    response=[202],
)
