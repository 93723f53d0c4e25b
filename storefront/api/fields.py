"""Request fields that take JSON types literally (a quantity is an integer, never "2" or 2.0;
text is a string, never a number) and match their patterns whole, as the OpenAPI schema says."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data: Any) -> int:
        # bool is an int subclass in Python; JSON true is not a number.
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string taken as sent: not trimmed, so the schema's length limits hold as written."""

    default_error_messages = {"invalid": "A JSON string is required."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    """A JSON string matching `regex` whole. Write the pattern with \\A and \\Z (Python's `$`
    also matches before a final newline); the schema shows them as ECMA's ^ and $."""

    default_error_messages = {"invalid": "A JSON string is required."}

    def __init__(self, regex: str, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(regex, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDecimalField(serializers.DecimalField):
    """A decimal amount sent as a JSON string in plain notation ("12.50"): never a float, whose
    binary value is not the amount meant, and never "1e2" or " 12.5 "."""

    default_error_messages = {"invalid": 'A decimal string such as "12.50" is required.'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        integer_digits = self.max_digits - self.decimal_places  # type: ignore[operator]
        self._plain = re.compile(
            rf"-?[0-9]{{0,{integer_digits}}}(?:\.[0-9]{{0,{self.decimal_places}}})?"
        )

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not self._plain.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)
