"""The API's one request format: JSON, of bounded size and depth.

DRF reads the body straight from the request stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE is
not applied to it; the limit is enforced here instead, before anything is parsed.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import exceptions, parsers

from sagas.api.config import api_config
from sagas.api.errors import RequestTooLarge


class LimitedJSONParser(parsers.JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = api_config().max_body_bytes
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise RequestTooLarge()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge()
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            text = codecs.decode(raw, encoding)
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            # RecursionError: a body of deeply nested brackets.
            raise exceptions.ParseError(f"JSON parse error: {type(exc).__name__}.") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
