"""saga_audit across five databases: each service's rows are read from its own database, and a
violation that only shows when two databases are compared (a charge in the Payment Service's
database for a saga the saga database has failed) is found. The full set of planted violations
runs in tests/lab/test_audit.py, which make test-multidb runs in this mode too."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connections

from lab.audit import audit
from payments.models import Charge
from payments.services import charge_payment
from sagas.core.state import SagaStatus
from tests.lab.test_audit import (
    card,
    completed_saga,
    failed_saga,
    failed_with_a_net_charge,
    saga_row,
    stocked,
)

pytestmark = pytest.mark.django_db(databases="__all__")


def test_the_audit_reads_each_service_from_its_own_database() -> None:
    stocked()
    completed_saga()

    report = audit()

    assert report.violations == []
    assert report.databases == {
        side: str(connections[alias].settings_dict["NAME"])
        for side, alias in [
            ("sagas", "default"),
            ("orders", "orders"),
            ("payments", "payments"),
            ("inventory", "inventory"),
            ("shipping", "shipping"),
        ]
    }
    assert len(set(report.databases.values())) == 5


def test_a_charge_in_the_payments_database_for_a_failed_saga_is_flagged() -> None:
    stocked()
    completed_saga()
    failed_saga()
    saga_id = saga_row(SagaStatus.FAILED, Decimal("5.00"), reason="payment_declined")
    charge_payment(
        saga_id=saga_id,
        order_id=saga_id,
        payment_token=card(),
        amount=Decimal("5.00"),
        currency="EUR",
    )
    assert Charge.objects.db == "payments"

    report = audit()

    assert report.violations == [f"failed {saga_id}: net charge 5.00"]


def test_a_net_charge_left_by_an_unfinished_compensation_is_flagged() -> None:
    stocked()
    key = failed_with_a_net_charge()

    violations = audit().violations

    assert len(violations) == 1 and key in violations[0] and "charge" in violations[0]
