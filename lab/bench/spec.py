"""What one benchmark run is: its load (orders, concurrency, products, declines), how orders
come in (HTTP or the service function) and the saga's shape (parallel or chained); and the
standard set. Plain data, no Django."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class RunSpec:
    name: str = ""  # a label for the report; a single run is named after its options
    orders: int = 500
    concurrency: int = 20
    skus: int = 1
    decline_rate: Fraction = Fraction(0)
    direct: bool = False  # place orders with storefront.checkout.place_order, not over HTTP
    sequential: bool = False  # the order saga's steps forced into a chain

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        shape = " direct" if self.direct else ""
        return f"c={self.concurrency}{shape}" + (" sequential" if self.sequential else "")

    def problems(self) -> list[str]:
        found = [
            f"--{name} must be at least 1, not {value}"
            for name, value in (
                ("orders", self.orders),
                ("concurrency", self.concurrency),
                ("skus", self.skus),
            )
            if value < 1
        ]
        if not 0 <= self.decline_rate <= 1:
            found.append(f"--decline-rate must be from 0 to 1, not {float(self.decline_rate)}")
        return found

    @property
    def declined(self) -> int:
        """How many of the orders are paid with a declined card."""
        return math.floor(self.orders * self.decline_rate)

    def argv(self) -> list[str]:
        """This run as saga_bench arguments."""
        return [
            f"--name={self.label}",
            f"--orders={self.orders}",
            f"--concurrency={self.concurrency}",
            f"--skus={self.skus}",
            f"--decline-rate={self.decline_rate}",
            *(["--direct"] if self.direct else []),
            *(["--sequential"] if self.sequential else []),
        ]


def is_declined(index: int, rate: Fraction) -> bool:
    """Whether order number `index` (from 0) gets the declined card: spread evenly and
    deterministically, floor(n * rate) of the first n orders, exactly (no float rounding)."""
    return math.floor((index + 1) * rate) > math.floor(index * rate)


def decline_rate(raw: str) -> Fraction:
    """Parse `--decline-rate` ("0.05", "1/20"); raises ValueError when it is not a number."""
    try:
        return Fraction(raw.strip())  # refuses "nan" and "inf" too
    except ZeroDivisionError:
        raise ValueError(raw) from None


# The standard set (`--suite standard`), each on a fresh database, all over HTTP: idle latency
# first, then two loads with a realistic mix of products and declined cards.
STANDARD = (
    RunSpec("idle c=1", orders=200, concurrency=1, skus=1),
    RunSpec("c=32", orders=2000, concurrency=32, skus=10, decline_rate=Fraction(1, 20)),
    RunSpec("c=64", orders=2000, concurrency=64, skus=10, decline_rate=Fraction(1, 20)),
)
SUITES = {"standard": STANDARD}
