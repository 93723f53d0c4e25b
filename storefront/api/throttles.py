"""Rate limit on placing orders, per user, in the configured cache (ORDER_THROTTLE_RATE)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

from sagas.api.config import api_config


class OrderCreationThrottle(UserRateThrottle):
    scope = "orders"

    def get_rate(self) -> str | None:
        return api_config().order_throttle_rate

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        # The rate is read per request, so a changed setting applies without a restart.
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
