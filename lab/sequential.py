"""The order saga forced into a chain, for the benchmark's `--sequential` runs: what the parallel
steps buy is the difference. Only the lab does this, and only when asked (LAB_SEQUENTIAL_SAGAS=1
in the environment of every process); the engine and the services do not know."""

from __future__ import annotations

import os
from dataclasses import replace

from sagas.core.definition import SagaDefinition

ENV = "LAB_SEQUENTIAL_SAGAS"


def chained(definition: SagaDefinition) -> SagaDefinition:
    """The same steps in their listed order, each depending on the one before it only.

    Kinds, compensations, retry policies and deadlines are kept. A definition lists every step
    after the steps it depends on, so the chain keeps each original dependency as an ancestor:
    nothing can run earlier than before, and the pivot still precedes what came after it.
    """
    steps = definition.steps
    return replace(
        definition,
        steps=tuple(
            replace(step, depends_on=(steps[n - 1].name,) if n else ())
            for n, step in enumerate(steps)
        ),
    )


def install() -> None:
    """Re-register every version of the order saga as a chain when LAB_SEQUENTIAL_SAGAS=1 (in
    the lab's ready(), which runs after the Order Service registered them)."""
    if os.environ.get(ENV) != "1":
        return
    from orders.saga import ORDER_SAGA
    from sagas import registry

    for version in registry.versions(ORDER_SAGA):
        registry.register(chained(registry.definition(ORDER_SAGA, version)))
