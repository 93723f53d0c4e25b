"""The benchmark: idle latency and saga throughput through the real system, against the naive
ceiling of four plain local commits per order on the same database."""

from __future__ import annotations

import itertools
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import requests
from django.db import connections

from sagas.core.state import SagaStatus
from sagas.models import Saga
from storefront.samples import order_body


@dataclass
class Throughput:
    orders: int
    seconds: float
    completed: int
    failed: int

    @property
    def per_second(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0


class Driver:
    """Places orders over HTTP and waits for them in the database."""

    def __init__(self, base_url: str, token: str, skus: list[str]) -> None:
        self.base_url, self.skus = base_url, skus
        self.placed = itertools.count()  # orders spread over the SKUs in turn
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=256))
        self.http.headers["Authorization"] = f"Token {token}"

    def place(self) -> str:
        answer = self.http.post(
            f"{self.base_url}/api/orders/",
            json=order_body(sku=self.skus[next(self.placed) % len(self.skus)], quantity=1),
            timeout=60,
        )
        if answer.status_code != 202:
            raise RuntimeError(f"order refused: {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["saga_id"])

    def wait_finished(self, saga_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while Saga.objects.filter(id__in=saga_ids, finished_at__isnull=True).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("orders did not finish in time")
            time.sleep(0.02)


def latency(driver: Driver, count: int) -> list[float]:
    """Submit-to-finish milliseconds of `count` orders placed one at a time on an idle system."""
    ids = []
    for _ in range(count):
        saga_id = driver.place()
        driver.wait_finished([saga_id], timeout=60)
        ids.append(saga_id)
    return [
        (finished - created).total_seconds() * 1000
        for created, finished in Saga.objects.filter(id__in=ids).values_list(
            "created_at", "finished_at"
        )
        if finished is not None
    ]


def throughput(
    driver: Driver, orders: int, concurrency: int, progress: Callable[[str], None]
) -> Throughput:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ids = list(pool.map(lambda _: driver.place(), range(orders)))
    progress(f"  {orders} orders accepted in {time.monotonic() - started:.1f} s; waiting for them")
    driver.wait_finished(ids, timeout=600)
    seconds = time.monotonic() - started
    statuses = list(Saga.objects.filter(id__in=ids).values_list("status", flat=True))
    return Throughput(
        orders, seconds, statuses.count(SagaStatus.COMPLETED), statuses.count(SagaStatus.FAILED)
    )


def _naive_orders(count: int, skus: list[str]) -> None:
    from inventory.services import reserve_stock
    from orders.services import LineSpec, create_order
    from payments.services import charge_payment
    from shipping.services import Address, schedule_shipment

    address = Address("Bench", "1 Loop Road", "Lyon", "69001", "FR")
    for n in range(count):
        sku = skus[n % len(skus)]
        saga_id, order_id = uuid.uuid4(), uuid.uuid4()
        price = Decimal("12.50")
        create_order(
            order_id=order_id,
            saga_id=saga_id,
            user_id=1,
            lines=[LineSpec(sku, 1, price)],
            total=price,
            currency="EUR",
        )
        reserve_stock(saga_id=saga_id, order_id=order_id, quantities={sku: 1})
        charge_payment(
            saga_id=saga_id,
            order_id=order_id,
            payment_token="pm_naive",
            amount=price,
            currency="EUR",
        )
        schedule_shipment(saga_id=saga_id, order_id=order_id, address=address)
    connections.close_all()


def naive_ceiling(orders: int, processes: int, skus: list[str]) -> float:
    """Orders per second doing only the four local commits, in `processes` parallel processes."""
    from payments.models import PaymentMethod

    PaymentMethod.objects.get_or_create(
        token="pm_naive",
        defaults={"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2035},
    )
    connections.close_all()  # never share a connection across fork
    context = multiprocessing.get_context("fork")
    per_process = orders // processes
    started = time.monotonic()
    workers = [
        context.Process(target=_naive_orders, args=(per_process, skus)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if any(worker.exitcode for worker in workers):
        raise RuntimeError("a naive-ceiling process failed")
    return per_process * processes / (time.monotonic() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, "
        f"min {min(values):.1f} ms, max {max(values):.1f} ms"
    )
