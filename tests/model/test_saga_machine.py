"""A model of the whole system under a hostile network: the saga engine and the four services.

Hypothesis drives the real code in-process against PostgreSQL and plays the network itself.
Commands travel in django-q2's own queue table (OrmQ); the test delivers any queued task, in any
order, twice, or into a service worker that dies before or after its commit. Replies can be lost
or arrive twice, timers fire when the test moves the sagas' clock, a paused saga worker loses its
lease to another, and operators cancel or retry sagas. After every step the invariants of
docs/architecture.md §4 that hold mid-run are checked, on the end state and on the path that led there: the
sagas' event logs and the services' records must show compensations in reverse dependency
order, attempts within each step's retry policy, no compensation once the pivot succeeded,
and each reply applied once. At the end the network turns fair, everything drains, and the
cross-service audit must find every saga finished and nothing violated.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from unittest import mock

import pytest
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Sum
from django.utils import timezone
from django_q.models import OrmQ, Task
from django_q.signing import SignedPackage
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory.models import InventoryStepRecord, Product, Reservation, ReservationLine
from inventory.services import create_product
from lab.audit import audit
from orders.models import Order, OrderLine, OrderStepRecord
from orders.saga import (
    ORDER_SAGA,
    CardSummary,
    OrderSagaData,
    OrderSagaLine,
    ShippingAddress,
)
from payments.exceptions import ProcessorUnavailable
from payments.models import Charge, PaymentMethod, PaymentStepRecord, Refund
from payments.services import TEST_CARDS, tokenize_card
from sagas import participant, registry, store, transport
from sagas.core.definition import MAX_DEADLINE_GROWTH, RetryPolicy, SagaDefinition, StepKind
from sagas.core.state import SagaStatus, StepStatus, step_log
from sagas.exceptions import SagaActionRejected
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.participant import StepRecord
from sagas.services import compensate_saga, retry_saga, start_saga
from shipping.models import Shipment, ShippingStepRecord
from storefront.models import IdempotencyKey
from storefront.samples import address

pytestmark = [pytest.mark.postgres]

T = TypeVar("T")

LEASE_SECONDS = 30.0
CLAIM_ALL = 1000
MAX_DRAIN_ROUNDS = 200
USER_ID = 7
UNSERVED_COUNTRY = "AQ"
# Little stock, so that concurrent orders run out of it.
PRODUCTS = {"SKU-A": (Decimal("12.50"), 4), "SKU-B": (Decimal("7.25"), 3)}
# The industry's test cards, by the behaviour the simulated processor gives them.
CARDS: dict[str, str] = {behaviour.value: number for number, behaviour in TEST_CARDS.items()}
# What each card makes the charge step refuse with (a processing error is a fault, not a refusal).
REFUSALS: dict[str, set[str]] = {
    PaymentMethod.Behaviour.OK: set(),
    PaymentMethod.Behaviour.DECLINED: {"payment_declined"},
    PaymentMethod.Behaviour.INSUFFICIENT_FUNDS: {"insufficient_funds"},
    PaymentMethod.Behaviour.PROCESSING_ERROR: set(),
}
TERMINAL = (SagaStatus.COMPLETED, SagaStatus.FAILED)
QUEUES = ("orders", "inventory", "payments", "shipping")

# Every table the system writes, emptied before each example (the database is flushed only
# once per test function, and one function runs many examples).
TABLES: list[type[models.Model]] = [
    SagaReply,
    SagaEvent,
    IdempotencyKey,
    Saga,
    OrmQ,
    Task,
    OrderLine,
    Order,
    OrderStepRecord,
    Refund,
    Charge,
    PaymentMethod,
    PaymentStepRecord,
    ReservationLine,
    Reservation,
    Product,
    InventoryStepRecord,
    Shipment,
    ShippingStepRecord,
]


# --- the network and the clock ---
#
# The saga timers run on the wall clock (retry backoffs are fractions of a second), so no rule's
# precondition may read it: Hypothesis must see the same rules enabled when it replays a run.
# A worker pass with nothing due is simply a pass that finds nothing.


class WorkerKilled(BaseException):
    """A service worker dies mid-task. Not an Exception: nothing may mistake it for a fault."""


def kill_worker(command: Command) -> None:
    raise WorkerKilled(command.key)


def queued() -> list[Any]:
    """The tasks django-q2 holds for the service queues, oldest first."""
    return list(OrmQ.objects.order_by("id"))


def batch_of(task: Any) -> list[dict[str, Any]]:
    """The commands of one queued task, as `transport.execute` receives them."""
    package: dict[str, Any] = SignedPackage.loads(task.payload)
    assert package["func"] == "sagas.transport.execute"
    return list(package["args"][0])


def note(what: str) -> None:
    """Count `what` in Hypothesis's statistics (nowhere in the spelled-out runs)."""
    if currently_in_test_context():
        event(what)


def pick(items: Sequence[T], index: int) -> T:
    return items[index % len(items)]


def assert_only_expected_faults(replies: list[Reply]) -> None:
    """The one fault a service may answer here is the card processor's transient error.

    Anything else (an IntegrityError from an effect applied twice, a state conflict, a bug)
    would otherwise be retried quietly by the engine: here it fails the run.
    """
    for reply in replies:
        if reply.outcome is Outcome.FAULT:
            assert (reply.step, reply.compensation, reply.code) == (
                "charge_payment",
                False,
                ProcessorUnavailable.__name__,
            ), f"unexpected fault: {reply}"


def stored_replies(command: Command) -> tuple[Any, Any] | None:
    """What the service recorded for this command's step: (action reply, compensation reply)."""
    record = participant.participant_for(command.name).record
    row = (
        record._default_manager.filter(saga_id=command.saga_id, step=command.step)
        .values_list("action_reply", "compensation_reply")
        .first()
    )
    return None if row is None else (row[0], row[1])


def advance_clock(seconds: float) -> None:
    """Let `seconds` pass for every saga timer: reply deadlines and retry backoffs.

    The store reads the wall clock, so instead of sleeping the timers move back: each step's
    `due` in the saga state and the saga's `due_at` (a worker claims by `due_at`, then the pure
    core fires the steps whose `due` has passed).
    """
    with transaction.atomic():
        for saga in Saga.objects.select_for_update().order_by("id"):
            steps = step_log(saga.state)
            for step in steps.values():
                if step["due"] is not None:
                    step["due"] -= seconds
            saga.state = dict(saga.state, steps=steps)
            if saga.due_at is not None:
                saga.due_at -= timedelta(seconds=seconds)
            saga.save(update_fields=["state", "due_at"])


def due_now() -> bool:
    return Saga.objects.filter(due_at__lte=timezone.now()).exists()


def footprint() -> tuple[list[Any], ...]:
    """Everything a saga worker's decision can write."""
    return (
        list(
            Saga.objects.order_by("id").values_list(
                "id", "status", "state", "due_at", "fence", "lease_owner", "lease_until"
            )
        ),
        list(SagaEvent.objects.order_by("id").values_list("id", flat=True)),
        list(SagaReply.objects.order_by("id").values_list("id", flat=True)),
        list(OrmQ.objects.order_by("id").values_list("id", flat=True)),
    )


def reset_database() -> None:
    tables = [model._meta.db_table for model in TABLES]
    with connection.cursor() as cursor:
        for sql in connection.ops.sql_flush(no_style(), tables, reset_sequences=True):
            cursor.execute(sql)


# --- what the services must show ------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """A step's effect in its service, and how the step's stored replies must describe it."""

    step: str
    record: type[StepRecord]
    model: type[models.Model]
    reply_field: str  # names the effect in the action's reply data
    undone: str  # the effect's status once its compensation undid it


EFFECTS = (
    Effect("create_order", OrderStepRecord, Order, "order_id", Order.Status.CANCELLED),
    Effect(
        "reserve_stock",
        InventoryStepRecord,
        Reservation,
        "reservation_id",
        Reservation.Status.RELEASED,
    ),
    Effect("charge_payment", PaymentStepRecord, Charge, "charge_id", Charge.Status.REFUNDED),
    Effect(
        "schedule_shipment", ShippingStepRecord, Shipment, "shipment_id", Shipment.Status.CANCELLED
    ),
)


def check_effects_match_stored_replies(effect: Effect) -> None:
    """At most once, and nothing for a compensated step (docs/architecture.md §4), read from the
    service.

    An effect exists exactly when its action's stored reply is OK and names it; it is undone
    exactly when a compensation undid it; a tombstone (a compensation that beat its action)
    leaves no effect behind.
    """
    records = {
        str(saga_id): (action, undo)
        for saga_id, action, undo in effect.record._default_manager.filter(
            step=effect.step
        ).values_list("saga_id", "action_reply", "compensation_reply")
    }
    name = effect.model.__name__
    found: set[str] = set()
    for pk, saga_id, status in effect.model._default_manager.values_list("pk", "saga_id", "status"):
        key = str(saga_id)
        assert key not in found, f"two {name} rows for saga {key}: an effect applied twice"
        found.add(key)
        action, undo = records.get(key, (None, None))
        assert (
            action is not None
            and action["outcome"] == Outcome.OK
            and str(action["data"].get(effect.reply_field)) == str(pk)
        ), f"{name} {pk} of saga {key} has no stored OK reply naming it: {action}"
        undone = (
            undo is not None and undo["outcome"] == Outcome.OK and undo["data"].get("undone", True)
        )
        assert (status == effect.undone) == bool(undone), (
            f"{name} {pk} of saga {key} is {status} but its compensation reply is {undo}"
        )
    for key, (action, undo) in records.items():
        if action is not None and action["outcome"] == Outcome.OK:
            assert key in found, f"saga {key}: {effect.step} answered OK but no {name} exists"
        if undo is not None and undo["data"].get("tombstone"):
            assert key not in found, f"saga {key}: {name} exists behind a tombstone"
            assert action is None or (action["outcome"], action["code"]) == (
                Outcome.REFUSED,
                "compensated",
            ), f"saga {key}: the action after a tombstone answered {action}"


# --- the path: what happened, in order ------------------------------------------------------


def step_record(saga_id: str, step: str) -> tuple[Any, Any] | None:
    """(action reply, compensation reply) its service stored for a saga's step, None if none."""
    action = registry.latest(ORDER_SAGA).step(step).action
    return stored_replies(Command(action, saga_id, step, False, 1))


def compensation_after_its_dependents(command: Command, run: transport.Perform) -> Reply:
    """A compensation reaches its service only once every step that depends on it has been
    undone there, or did nothing (never sent, or refused): compensations run in reverse
    dependency order, as the services see them."""
    if command.compensation:
        for child in registry.latest(ORDER_SAGA).dependents(command.step):
            record = step_record(command.saga_id, child.name)
            if record is None:
                continue
            action, undo = record
            assert undo is not None or (
                action is not None and action["outcome"] == Outcome.REFUSED
            ), (
                f"{command.key} reached its service before {child.name}, which depends on it, "
                f"was undone: {record}"
            )
    return run(None)


# The event kinds that say which command was sent and which reply was applied.
APPLIED = ("step_succeeded", "step_refused", "step_compensated")


def check_the_path(
    definition: SagaDefinition, saga_id: str, log: list[tuple[str, str, int]]
) -> None:
    """One saga's event log, in order, must read as the definition allows (docs/architecture.md
    §3, §4, §9).

    - attempts are numbered 1, 2, 3 ... and each round (an operator retry starts a new one)
      stays within the step's retry policy, for actions and compensations alike; a retry is
      scheduled only while the round has an attempt left;
    - a compensation is first sent only once every step depending on it that was sent has been
      compensated or refused: reverse dependency order;
    - once the pivot succeeded nothing turns back and nothing is compensated;
    - a reply's outcome (succeeded, refused, compensated) is applied once per step;
    - nothing goes forward after the saga turned back, and the engine never fails.
    """
    pivot = next(step.name for step in definition.steps if step.kind is StepKind.PIVOT)
    sent: Counter[tuple[str, bool]] = Counter()  # the last attempt number sent
    rounds: Counter[tuple[str, bool]] = Counter()  # sends since the last operator retry
    applied: Counter[tuple[str, str]] = Counter()
    failed = ("", False)  # the step (and whether its compensation) whose failure was last logged
    turned_back = past_pivot = False

    def policy(step: str, compensation: bool) -> RetryPolicy:
        return (
            definition.step(step).compensation_retry
            if compensation
            else definition.step(step).retry
        )

    for kind, step, attempt in log:
        where = f"saga {saga_id}: {kind} {step} #{attempt}".rstrip(" #0")
        assert kind != "engine_error", f"saga {saga_id}: the engine failed on it"
        if kind in ("step_sent", "compensation_sent"):
            compensation = kind == "compensation_sent"
            key = (step, compensation)
            assert attempt == sent[key] + 1, f"{where}: the attempt before was #{sent[key]}"
            sent[key] = attempt
            rounds[key] += 1
            allowed = policy(*key).max_attempts
            assert rounds[key] <= allowed, f"{where}: {rounds[key]} sends in a round of {allowed}"
            if not compensation:
                assert not turned_back, f"{where}: sent after the saga turned back"
                continue
            assert turned_back and not past_pivot, f"{where}: compensating past the pivot"
            if attempt == 1:
                for child in definition.dependents(step):
                    undone = (
                        applied["step_compensated", child.name]
                        or applied["step_refused", child.name]
                    )
                    assert undone or not sent[child.name, False], (
                        f"{where}: sent before {child.name}, which depends on it, was undone"
                    )
        elif kind in ("step_failed", "compensation_failed"):
            failed = (step, kind == "compensation_failed")
        elif kind == "retry_scheduled":
            assert failed[0] == step, f"{where}: no failure to retry"
            assert rounds[failed] < policy(*failed).max_attempts, (
                f"{where}: no attempt left in the round"
            )
        elif kind in APPLIED:
            applied[kind, step] += 1
            assert applied[kind, step] == 1, f"{where}: a reply applied twice"
            if kind == "step_succeeded":
                assert not turned_back, f"{where}: after the saga turned back"
                past_pivot = past_pivot or step == pivot
        elif kind == "compensation_started":
            assert not past_pivot, f"{where}: turning back past the pivot"
            assert not turned_back, f"{where}: turning back twice"
            turned_back = True
        elif kind == "step_resumed":
            rounds[step, False] = rounds[step, True] = 0


def check_no_compensation_past_the_pivot(definition: SagaDefinition) -> None:
    """No service ever undid a step of a saga whose pivot succeeded."""
    pivot = next(step.name for step in definition.steps if step.kind is StepKind.PIVOT)
    past_pivot = {
        str(saga_id)
        for saga_id in SagaEvent.objects.filter(kind="step_succeeded", step=pivot).values_list(
            "saga_id", flat=True
        )
    }
    for effect in EFFECTS:
        undone = {
            str(saga_id)
            for saga_id in effect.record._default_manager.filter(
                compensation_reply__isnull=False
            ).values_list("saga_id", flat=True)
        }
        assert not undone & past_pivot, (
            f"{effect.step} undone for sagas past their pivot: {sorted(undone & past_pivot)}"
        )


@dataclass(frozen=True)
class Submitted:
    """An order as the test placed it, to judge how its saga may end."""

    card: str
    country: str

    def may_complete(self) -> bool:
        return self.card == PaymentMethod.Behaviour.OK and self.country != UNSERVED_COUNTRY

    def possible_reasons(self, cancelled: bool) -> set[str]:
        # Any order may run out of stock, or time out when the network withholds its replies.
        reasons = {"out_of_stock", "service_unavailable", *REFUSALS[self.card]}
        if self.country == UNSERVED_COUNTRY:
            reasons.add("shipping_unavailable")
        if cancelled:
            reasons.add("cancelled")
        return reasons


LINES = st.lists(
    st.tuples(st.sampled_from(sorted(PRODUCTS)), st.integers(min_value=1, max_value=2)),
    min_size=1,
    max_size=2,
    unique_by=lambda line: line[0],
)


# --- the machine ----------------------------------------------------------------------------


class SagaSystem(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.orders: dict[str, Submitted] = {}
        self.cancelled: set[str] = set()  # sagas an operator turned back
        self.delivered: list[Reply] = []  # every reply a service sent, to send again
        self.started = 0

    @initialize(lines=LINES, fair_rounds=st.integers(min_value=0, max_value=2))
    def a_fresh_system_and_a_first_order(
        self, lines: list[tuple[str, int]], fair_rounds: int
    ) -> None:
        """Every run starts with an order that can complete, moved on by up to two fair
        rounds: at its start, with its pivot in flight, or past its pivot with the approval in
        flight. A cancellation or a silent service then meets each of these phases early."""
        reset_database()
        store._random.seed(0)  # retry jitter: a failing example replays the same way
        for sku, (price, stock) in PRODUCTS.items():
            create_product(sku=sku, name=sku, price=price, currency="EUR", stock=stock)
        for behaviour, number in CARDS.items():
            self.tokens[behaviour] = tokenize_card(
                number=number, exp_month=12, exp_year=date.today().year + 2, cvc="123"
            ).token
        self.submit_order(lines, PaymentMethod.Behaviour.OK, "FR")
        for _ in range(fair_rounds):
            self.the_network_is_fair_for_a_moment()

    # --- users and operators ---

    @rule(
        lines=LINES,
        card=st.just(PaymentMethod.Behaviour.OK) | st.sampled_from(list(CARDS)),
        country=st.sampled_from(("FR", "DE", UNSERVED_COUNTRY)),
    )
    def submit_order(self, lines: list[tuple[str, int]], card: str, country: str) -> None:
        self.started += 1
        # Ids from a counter, not random: uuid order decides processing order in a batch.
        saga_id, order_id = uuid.UUID(int=self.started), uuid.UUID(int=(1 << 64) + self.started)
        priced = tuple(OrderSagaLine(sku, quantity, PRODUCTS[sku][0]) for sku, quantity in lines)
        data = OrderSagaData(
            order_id=order_id,
            user_id=USER_ID,
            lines=priced,
            total=sum((line.unit_price * line.quantity for line in priced), Decimal("0")),
            currency="EUR",
            payment_token=self.tokens[card],
            card=CardSummary("visa", CARDS[card][-4:]),
            shipping_address=ShippingAddress(**address(country=country)),
        )
        start_saga(
            saga_type=ORDER_SAGA,
            data=data.to_json(),
            correlation_id=str(order_id),
            owner_id=USER_ID,
            saga_id=saga_id,
        )
        self.orders[str(saga_id)] = Submitted(card, country)

    @precondition(lambda self: bool(self.orders))
    @rule(saga=st.integers(min_value=0), while_a_worker_holds_it=st.booleans())
    def operator_compensates(self, saga: int, while_a_worker_holds_it: bool) -> None:
        saga_id = pick(self.unfinished_first(), saga)
        repeat = saga_id in self.cancelled
        claimed = (
            store.claim("worker-1", CLAIM_ALL, LEASE_SECONDS) if while_a_worker_holds_it else {}
        )
        before = Saga.objects.get(id=saga_id)
        past_pivot = step_log(before.state)["schedule_shipment"]["status"] == StepStatus.SUCCEEDED
        try:
            compensate_saga(saga_id=saga_id)
        except SagaActionRejected:
            row = Saga.objects.get(id=saga_id)
            assert not repeat, "a repeated cancel is answered as it is, never rejected"
            assert (
                step_log(row.state)["schedule_shipment"]["status"] == StepStatus.SUCCEEDED
                or row.reason_code
            ), "only a saga past its pivot or already turning back may refuse to compensate"
            fenced_out = 0
        except Exception as crash:
            # An operator's action applies or is rejected with a reason; it never breaks.
            where = "past its pivot" if past_pivot else before.status
            raise AssertionError(f"cancelling a saga {where} failed: {crash!r}") from crash
        else:
            assert not past_pivot, "an operator turned back a saga past its pivot"
            self.cancelled.add(saga_id)
            # The operator's decision bumped the fence; a repeat decided nothing and wrote nothing.
            fenced_out = int(uuid.UUID(saga_id) in claimed and not repeat)
        # A worker that claimed before the decision cannot undo it.
        if claimed:
            assert store.process("worker-1", claimed) == len(claimed) - fenced_out

    @precondition(lambda self: bool(self.orders))
    @rule(saga=st.integers(min_value=0))
    def operator_retries(self, saga: int) -> None:
        saga_id = pick(list(self.orders), saga)
        stuck = Saga.objects.get(id=saga_id).status == SagaStatus.STUCK
        try:
            retry_saga(saga_id=saga_id)
        except SagaActionRejected:
            assert not stuck, "a stuck saga can always be retried"

    def unfinished_first(self) -> list[str]:
        """The sagas, those still running first and, among them, those past their pivot: an
        operator acts where it changes something, and the rarer states (past the pivot, where a
        cancel must be refused; stuck) are met sooner."""
        finished, past_pivot = set(), set()
        for saga_id, status, state in Saga.objects.values_list("id", "status", "state"):
            if status in TERMINAL:
                finished.add(str(saga_id))
            elif step_log(state)["schedule_shipment"]["status"] == StepStatus.SUCCEEDED:
                past_pivot.add(str(saga_id))
        return sorted(
            self.orders, key=lambda saga_id: (saga_id in finished, saga_id not in past_pivot)
        )

    # --- the network ---

    def execute(self, task: Any) -> None:
        """Run the real task body on a task's commands, watching the replies it lands."""
        land = store.land

        def watched(replies: list[Reply]) -> list[str]:
            assert_only_expected_faults(replies)
            self.delivered.extend(replies)
            return land(replies)

        with mock.patch.object(store, "land", watched):
            transport.execute(batch_of(task))

    @precondition(lambda self: OrmQ.objects.exists())
    @rule(task=st.integers(min_value=0))
    def deliver_a_task(self, task: int) -> None:
        row = pick(queued(), task)  # any one: tasks overtake each other
        self.execute(row)
        row.delete()  # acknowledged

    @precondition(lambda self: OrmQ.objects.exists())
    @rule(task=st.integers(min_value=0))
    def deliver_a_task_twice(self, task: int) -> None:
        row = pick(queued(), task)
        self.execute(row)
        self.execute(row)
        row.delete()

    @precondition(lambda self: OrmQ.objects.exists())
    @rule(task=st.integers(min_value=0), at=st.integers(min_value=0))
    def service_worker_dies_before_a_commit(self, task: int, at: int) -> None:
        """The commands before `at` commit (their replies die with the worker); command `at`
        rolls back. Nothing is acknowledged: the task stays queued for redelivery."""
        batch = [Command.from_dict(raw) for raw in batch_of(pick(queued(), task))]
        dying = at % len(batch)
        assert_only_expected_faults([transport._run(command) for command in batch[:dying]])
        victim = batch[dying]
        before = stored_replies(victim)
        try:
            participant.perform(victim, before_commit=kill_worker)
        except WorkerKilled:
            pass
        except ProcessorUnavailable:
            pass  # the processor failed before the worker died: nothing to commit either way
        assert stored_replies(victim) == before, f"{victim.key} committed while its worker died"

    @precondition(lambda self: OrmQ.objects.exists())
    @rule(task=st.integers(min_value=0), at=st.integers(min_value=0))
    def service_worker_dies_after_a_commit(self, task: int, at: int) -> None:
        """Commands up to `at` commit, then the worker dies: their replies are lost and the
        task stays queued for redelivery."""
        batch = [Command.from_dict(raw) for raw in batch_of(pick(queued(), task))]
        lost = [transport._run(command) for command in batch[: at % len(batch) + 1]]
        assert_only_expected_faults(lost)

    @precondition(lambda self: OrmQ.objects.exists())
    @rule(task=st.integers(min_value=0), after_running=st.booleans())
    def a_task_is_lost(self, task: int, after_running: bool) -> None:
        """django-q2 gives up on a task, before or after its commands committed, and no reply
        ever comes: only the saga's deadline (the same command sent again) recovers."""
        row = pick(queued(), task)
        if after_running:
            batch = [Command.from_dict(raw) for raw in batch_of(row)]
            assert_only_expected_faults([transport._run(command) for command in batch])
        row.delete()

    @precondition(lambda self: bool(self.delivered))
    @rule(reply=st.integers(min_value=0))
    def a_reply_arrives_again(self, reply: int) -> None:
        transport.deliver([pick(self.delivered, reply)])

    @rule(seconds=st.sampled_from((1.0, 5.0, 25.0)))
    def time_passes(self, seconds: float) -> None:
        advance_clock(seconds)  # 1 s fires early backoffs, 25 s every reply deadline (20 s)

    @rule()
    def the_network_is_fair_for_a_moment(self) -> None:
        """Every queued task is delivered once, then a worker reads every due saga: sagas move
        on, so the hostile rules also meet sagas at and past their pivot."""
        for row in queued():
            self.execute(row)
            row.delete()
        claimed = store.claim("worker-1", CLAIM_ALL, LEASE_SECONDS)
        assert store.process("worker-1", claimed) == len(claimed)

    @rule(queue=st.sampled_from(QUEUES), deadlines=st.integers(min_value=1, max_value=3))
    def a_service_falls_silent_past_a_deadline(self, queue: str, deadlines: int = 1) -> None:
        """Every task queued for one service is lost, the step deadline passes, and a worker
        reads every due saga: what was in flight goes out again, until attempts run out. The
        service stays silent for `deadlines` deadlines in a row, so one rule can exhaust a
        step's attempts (and show a send beyond them)."""
        for _ in range(deadlines):
            OrmQ.objects.filter(key=queue).delete()
            advance_clock(MAX_DEADLINE_GROWTH * registry.latest(ORDER_SAGA).steps[0].deadline + 1)
            claimed = store.claim("worker-1", CLAIM_ALL, LEASE_SECONDS)
            assert store.process("worker-1", claimed) == len(claimed)

    # --- the saga workers ---

    @rule(limit=st.integers(min_value=1, max_value=5), meanwhile=st.none() | st.integers(0))
    def saga_worker_pass(self, limit: int, meanwhile: int | None) -> None:
        """One worker batch; with `meanwhile`, a task's replies land while it holds the lease."""
        claimed = store.claim("worker-1", limit, LEASE_SECONDS)
        if meanwhile is not None and OrmQ.objects.exists():
            self.deliver_a_task(meanwhile)
        assert store.process("worker-1", claimed) == len(claimed)

    @rule(limit=st.integers(min_value=1, max_value=5), taker_first=st.booleans())
    def a_paused_worker_loses_its_lease(self, limit: int, taker_first: bool) -> None:
        due = due_now()
        stale = store.claim("worker-a", limit, LEASE_SECONDS)
        assert stale or not due, "a due saga could not be claimed"
        if not stale:
            return
        # worker-a pauses past its lease; worker-b takes its sagas over with a new fence.
        Saga.objects.filter(id__in=list(stale)).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        fresh = store.claim("worker-b", CLAIM_ALL, LEASE_SECONDS)
        assert {saga_id: fence + 1 for saga_id, fence in stale.items()}.items() <= fresh.items()
        if taker_first:
            assert store.process("worker-b", fresh) == len(fresh)
        before = footprint()
        assert store.process("worker-a", stale) == 0
        assert footprint() == before, "a worker that lost its lease wrote something"
        if not taker_first:
            assert store.process("worker-b", fresh) == len(fresh)

    # --- invariants that hold at every step ---

    @invariant()
    def stock_is_never_negative_and_is_conserved(self) -> None:
        held = dict(
            ReservationLine.objects.filter(reservation__status=Reservation.Status.RESERVED)
            .values("sku")
            .annotate(units=Sum("quantity"))
            .values_list("sku", "units")
        )
        for sku, available, received in Product.objects.values_list("sku", "available", "received"):
            assert available >= 0, f"{sku}: negative stock"
            assert available + held.get(sku, 0) == received, (
                f"{sku}: {available} available + {held.get(sku, 0)} held != {received} received"
            )

    @invariant()
    def every_effect_is_applied_at_most_once_and_never_behind_a_tombstone(self) -> None:
        for effect in EFFECTS:
            check_effects_match_stored_replies(effect)
        approved = {
            str(s)
            for s in Order.objects.filter(status=Order.Status.APPROVED).values_list(
                "saga_id", flat=True
            )
        }
        approvals = {
            str(saga_id)
            for saga_id, action in OrderStepRecord.objects.filter(step="approve_order").values_list(
                "saga_id", "action_reply"
            )
            if action is not None and action["outcome"] == Outcome.OK
        }
        assert approved == approvals, "order approvals and their stored replies disagree"

    @invariant()
    def a_failed_saga_holds_nothing(self) -> None:
        failed = list(Saga.objects.filter(status=SagaStatus.FAILED).values_list("id", flat=True))
        net: dict[str, Decimal] = defaultdict(Decimal)
        for saga_id, amount in Charge.objects.filter(saga_id__in=failed).values_list(
            "saga_id", "amount"
        ):
            net[str(saga_id)] += amount
        for saga_id, amount in Refund.objects.filter(charge__saga_id__in=failed).values_list(
            "charge__saga_id", "amount"
        ):
            net[str(saga_id)] -= amount
        charged = {saga_id: amount for saga_id, amount in net.items() if amount}
        assert not charged, f"failed sagas with a net charge: {charged}"
        live = Reservation.objects.filter(saga_id__in=failed, status=Reservation.Status.RESERVED)
        assert not live.exists(), f"failed sagas still reserve stock: {list(live)}"
        shipped = Shipment.objects.filter(saga_id__in=failed, status=Shipment.Status.SCHEDULED)
        assert not shipped.exists(), f"failed sagas still ship: {list(shipped)}"

    @invariant()
    def outcomes_follow_from_the_orders(self) -> None:
        for saga_id, status, reason in Saga.objects.values_list("id", "status", "reason_code"):
            order = self.orders[str(saga_id)]
            if status == SagaStatus.COMPLETED:
                assert order.may_complete(), f"saga {saga_id} completed an order of {order}"
            if reason:
                allowed = order.possible_reasons(str(saga_id) in self.cancelled)
                assert reason in allowed, f"saga {saga_id} ({order}) failed with {reason}"

    @invariant()
    def an_unread_reply_keeps_its_saga_due(self) -> None:
        """A delivered reply makes its saga due at once, and nothing may push that back.

        Workers read the inbox only of due sagas: a saga with a reply and no due time keeps the
        reply forever (store.land leaves none unread); one due later leaves
        the reply waiting for an unrelated timer.
        """
        now = timezone.now()
        for saga_id, status, due_at in (
            Saga.objects.filter(replies__isnull=False)
            .distinct()
            .values_list("id", "status", "due_at")
        ):
            assert due_at is not None, (
                f"{status} saga {saga_id} has unread replies that no worker will ever claim"
            )
            assert due_at <= now, (
                f"{status} saga {saga_id} has unread replies but is due only in "
                f"{(due_at - now).total_seconds():.1f} s"
            )

    @invariant()
    def every_saga_took_a_path_its_definition_allows(self) -> None:
        definition = registry.latest(ORDER_SAGA)
        logs: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for saga_id, kind, step, attempt in SagaEvent.objects.order_by("id").values_list(
            "saga_id", "kind", "step", "attempt"
        ):
            logs[str(saga_id)].append((kind, step, attempt))
        for key, log in logs.items():
            check_the_path(definition, key, log)
        check_no_compensation_past_the_pivot(definition)

    @invariant()
    def the_audit_finds_no_violation(self) -> None:
        assert audit().violations == []

    # --- the end: a fair network drains everything ---

    def every_invariant(self) -> None:
        """Every @invariant above, for the spelled-out runs (Hypothesis calls them itself)."""
        self.stock_is_never_negative_and_is_conserved()
        self.every_effect_is_applied_at_most_once_and_never_behind_a_tombstone()
        self.a_failed_saga_holds_nothing()
        self.outcomes_follow_from_the_orders()
        self.an_unread_reply_keeps_its_saga_due()
        self.every_saga_took_a_path_its_definition_allows()
        self.the_audit_finds_no_violation()

    def teardown(self) -> None:
        if sys.exc_info()[0] is not None:
            return  # a step failed: hypothesis reports that; draining would only bury it
        self.drain()
        self.stock_is_never_negative_and_is_conserved()
        self.every_effect_is_applied_at_most_once_and_never_behind_a_tombstone()
        self.a_failed_saga_holds_nothing()
        self.outcomes_follow_from_the_orders()
        self.every_saga_took_a_path_its_definition_allows()
        report = audit()
        assert report.violations == []
        assert report.unfinished == 0
        assert report.quiet, f"not quiet after draining: {report}"
        for status, reason in Saga.objects.values_list("status", "reason_code"):
            note(f"saga ends {status}" + (f" ({reason})" if reason else ""))

    def drain(self) -> None:
        """Deliver every task, run workers and let timers fire until nothing is left to do.

        A saga the hostile network parked as stuck (a step out of attempts because its
        commands or replies were withheld or lost) is legitimately stuck: an operator retries
        it. From here on every command is answered before its deadline, so a retry ends the
        parking; a saga whose compensation keeps failing would park again and again until
        the rounds run out, and fail the run.
        """
        for _ in range(MAX_DRAIN_ROUNDS):
            for saga_id in Saga.objects.filter(status=SagaStatus.STUCK).values_list(
                "id", flat=True
            ):
                note("an operator retried a saga parked by the network")
                retry_saga(saga_id=saga_id)
            for row in queued():
                self.execute(row)
                row.delete()
            claimed = store.claim("drainer", CLAIM_ALL, LEASE_SECONDS)
            assert store.process("drainer", claimed) == len(claimed)
            if OrmQ.objects.exists():
                continue
            if not Saga.objects.exclude(status__in=TERMINAL).exists():
                return
            if Saga.objects.filter(status=SagaStatus.STUCK).exists():
                continue  # the operator retries it next round
            wait = store.seconds_until_due()
            if math.isinf(wait):
                break  # unfinished sagas that nothing will ever wake
            advance_clock(wait + 0.01)
        unfinished = Saga.objects.exclude(status__in=TERMINAL).values_list("id", "status", "state")
        pytest.fail(f"the system did not drain: {list(unfinished)}")


SETTINGS = settings(
    # CI replays the same examples on every run (a red build must mean a change broke
    # something); a developer's run explores new ones. More: HYPOTHESIS_EXAMPLES=300.
    derandomize=os.environ.get("CI") == "true",
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "25")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db(transaction=True)
def test_sagas_keep_the_invariants_whatever_the_network_does() -> None:
    run_state_machine_as_test(SagaSystem, settings=SETTINGS)


# Runs spelled out, replayed in every build beside the generated ones: the phases where a saga
# turns back or starves, which a few dozen generated runs do not all reach every time. Each run
# gives the first order some fair rounds, then applies its rules in order, checking every
# invariant after each; the drain follows, and the run must have shown what it is named for.
Steps = list[tuple[str, dict[str, Any]]]
CANCEL: tuple[str, dict[str, Any]] = (
    "operator_compensates",
    {"saga": 0, "while_a_worker_holds_it": False},
)
FAIR: tuple[str, dict[str, Any]] = ("the_network_is_fair_for_a_moment", {})
LATER: tuple[str, dict[str, Any]] = ("time_passes", {"seconds": 5.0})  # past any early backoff


def silent(queue: str) -> tuple[str, dict[str, Any]]:
    return ("a_service_falls_silent_past_a_deadline", {"queue": queue})


@dataclass(frozen=True)
class SpelledOut:
    first_order_rounds: int
    steps: Steps
    ends: dict[int, tuple[str, str]]  # saga number (1 = the first order): (status, reason)
    shows: set[tuple[str, str]]  # (event kind, step) the log must hold


FAILING_CARD_ORDER = (
    "submit_order",
    {"lines": [("SKU-B", 1)], "card": PaymentMethod.Behaviour.PROCESSING_ERROR, "country": "FR"},
)
SPELLED_OUT = {
    "an operator cancels while the pivot is in flight": SpelledOut(
        1,
        [CANCEL],
        ends={1: ("failed", "cancelled")},
        shows={("compensation_sent", "schedule_shipment"), ("step_compensated", "create_order")},
    ),
    "an operator cancels past the pivot and is refused": SpelledOut(
        2, [CANCEL], ends={1: ("completed", "")}, shows={("step_succeeded", "approve_order")}
    ),
    "the shipping service falls silent while the pivot is in flight": SpelledOut(
        1,
        [silent("shipping"), silent("shipping")],
        ends={1: ("failed", "service_unavailable")},
        shows={("step_exhausted", "schedule_shipment"), ("step_compensated", "charge_payment")},
    ),
    "the order service falls silent past the pivot": SpelledOut(
        2,
        [silent("orders"), silent("orders")],
        ends={1: ("completed", "")},
        shows={("step_stalled", "approve_order"), ("step_resumed", "approve_order")},
    ),
    "the card processor keeps failing": SpelledOut(
        0,
        [FAILING_CARD_ORDER, FAIR, LATER, FAIR, LATER, FAIR],
        ends={1: ("completed", ""), 2: ("failed", "service_unavailable")},
        shows={("retry_scheduled", "charge_payment"), ("step_exhausted", "charge_payment")},
    ),
    "every reply arrives twice": SpelledOut(
        1,
        [("a_reply_arrives_again", {"reply": n}) for n in range(3)] + [FAIR, FAIR],
        ends={1: ("completed", "")},
        shows={("reply_ignored", "create_order"), ("reply_ignored", "charge_payment")},
    ),
}


@pytest.mark.parametrize("run", SPELLED_OUT.values(), ids=list(SPELLED_OUT))
@pytest.mark.django_db(transaction=True)
def test_spelled_out_runs_keep_the_invariants(run: SpelledOut) -> None:
    machine = SagaSystem()
    machine.a_fresh_system_and_a_first_order(
        lines=[("SKU-A", 1)], fair_rounds=run.first_order_rounds
    )
    machine.every_invariant()
    for rule_name, arguments in run.steps:
        getattr(machine, rule_name)(**arguments)
        machine.every_invariant()
    machine.teardown()

    ends = {
        saga_id.int: (status, reason)
        for saga_id, status, reason in Saga.objects.values_list("id", "status", "reason_code")
    }
    assert ends == run.ends
    assert run.shows <= set(SagaEvent.objects.values_list("kind", "step"))
