"""The state machine must catch the engine's worst bugs, not only pass on the right engine.

Each mutant below is the engine's own code with one deliberate change, made by editing the text
of one method of the transition function (sagas/core/transition.py) and patching the compiled
result over the real method for the length of one run. The machine runs with the settings CI
uses (the same examples every time), without shrinking: the first failing example is the
verdict. Each mutant must make the machine fail, with the check named in docs/mutation.md, and
the same machine must pass on the unchanged engine.

These runs are left out of `make mutate` (pyproject.toml): they patch the engine themselves.
"""

from __future__ import annotations

import inspect
import random
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sagas import store
from sagas.core import transition
from tests.model.test_saga_machine import SagaSystem

pytestmark = [pytest.mark.postgres]

# The same examples every run; 100 of them, while the mutants below are caught by the 22nd at the
# latest (docs/mutation.md): a change to the machine that shifts the examples keeps a margin.
HUNT = settings(
    derandomize=True,
    database=None,
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Mutant:
    method: str  # of transition._Decider
    original: str  # a fragment of its source, found exactly once
    mutated: str
    caught_by: str  # a pattern the machine's failure message must match


MUTANTS = {
    # docs/architecture.md §3: compensations run in reverse dependency order. The mutant sends a
    # parent's compensation without waiting for the steps that depend on it to be undone.
    "wrong compensation order": Mutant(
        "_advance",
        "state.steps[d.name].status not in unsettled",
        "True",
        caught_by=r"sent before \w+, which depends on it, was undone"
        r"|reached its service before \w+, which depends on it",
    ),
    # docs/architecture.md §4: bounded attempts. The mutant re-sends at the deadline once more
    # than the step's retry policy allows.
    "an extra attempt": Mutant(
        "_on_tick",
        "if st.budget_used >= step.retry.max_attempts:",
        "if st.budget_used > step.retry.max_attempts:",
        caught_by=r"sends in a round of",
    ),
    # docs/architecture.md §9: after the pivot has succeeded the saga never turns back. The
    # mutant lets an operator's Cancel through past the pivot.
    "turning back past the pivot": Mutant(
        "_applies",
        "elif self._past_pivot():",
        "elif False:",
        caught_by=r"past its pivot|turning back past the pivot|compensating past the pivot",
    ),
    # docs/architecture.md §4: replies can arrive twice; each is applied once. The mutant applies
    # a reply to a step whatever the step's status, so a repeat counts again (and a late success
    # lands on a step being compensated).
    "a duplicate reply applied twice": Mutant(
        "_on_reply",
        "if st.status is not expected or sent == 0:",
        "if sent == 0:",
        caught_by=r"a reply applied twice|after the saga turned back",
    ),
}


def mutated_method(mutant: Mutant) -> Callable[..., Any]:
    """The method compiled from its own source with the mutant's one change, in the module's
    namespace. A fragment that is no longer in the source fails here, not silently later."""
    real = getattr(transition._Decider, mutant.method)
    source = textwrap.dedent(inspect.getsource(real))
    assert source.count(mutant.original) == 1, f"{mutant.original!r} not found once in {real}"
    # Compiled under this module's `from __future__ import annotations`, like the original.
    code = compile(
        source.replace(mutant.original, mutant.mutated),
        inspect.getsourcefile(real) or "<mutant>",
        "exec",
    )
    namespace = dict(vars(transition))
    exec(code, namespace)
    function: Callable[..., Any] = namespace[mutant.method]
    return function


def run_the_machine() -> None:
    # The examples are the same every run (derandomize); so is the engine's backoff jitter here,
    # so that a run takes the same path wherever it runs.
    with mock.patch.object(store, "_random", random.Random(20261126)):
        run_state_machine_as_test(SagaSystem, settings=HUNT)


@pytest.mark.django_db(transaction=True)
def test_the_machine_passes_on_the_engine_as_it_is() -> None:
    run_the_machine()


@pytest.mark.parametrize("mutant", MUTANTS.values(), ids=list(MUTANTS))
@pytest.mark.django_db(transaction=True)
def test_the_machine_catches_the_mutant(mutant: Mutant) -> None:
    with (
        mock.patch.object(transition._Decider, mutant.method, mutated_method(mutant)),
        pytest.raises(AssertionError) as failure,
    ):
        run_the_machine()
    assert re.search(mutant.caught_by, str(failure.value)), str(failure.value)
