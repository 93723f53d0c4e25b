"""The registry of saga definitions by type and version (no database): every registered version
stays available, new sagas take the latest, and an unknown version names what is registered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sagas import registry
from sagas.core.definition import SagaDefinition, Step

STEPS = (Step("a", "x.a", "x.undo_a"),)


def demo(version: int, steps: tuple[Step, ...] = STEPS) -> SagaDefinition:
    return SagaDefinition("demo", steps, version=version)


@pytest.fixture(autouse=True)
def no_demo_left() -> Iterator[None]:
    yield
    registry.unregister("demo")


def test_every_registered_version_stays_available_and_the_latest_is_the_highest() -> None:
    v1, v3, v2 = demo(1), demo(3, (*STEPS, Step("b", "x.b", "x.undo_b"))), demo(2)
    for definition in (v1, v3, v2):
        registry.register(definition)

    assert registry.versions("demo") == [1, 2, 3]
    assert registry.latest("demo") is v3
    assert [registry.definition("demo", v) for v in (1, 2, 3)] == [v1, v2, v3]
    assert [d.label for d in registry.definitions() if d.name == "demo"] == [
        "demo v1",
        "demo v2",
        "demo v3",
    ]


def test_registering_a_version_again_replaces_only_that_version() -> None:
    registry.register(demo(1))
    registry.register(demo(2))
    chained = demo(2, (*STEPS, Step("c", "x.c", "x.undo_c", ("a",))))

    registry.register(chained)

    assert registry.definition("demo", 2) is chained
    assert registry.definition("demo", 1) == demo(1)


def test_an_unregistered_version_is_a_lookup_error_that_names_the_registered_ones() -> None:
    registry.register(demo(2))
    registry.register(demo(5))

    with pytest.raises(
        LookupError, match=r"'demo' has no version 1 registered \(registered: v2, v5\)"
    ):
        registry.definition("demo", 1)
    with pytest.raises(LookupError, match="no saga type 'nothing'"):
        registry.latest("nothing")


def test_unregistering_the_last_version_removes_the_type() -> None:
    registry.register(demo(1))
    registry.register(demo(2))

    registry.unregister("demo", 1)
    assert registry.versions("demo") == [2]
    registry.unregister("demo", 2)

    assert "demo" not in registry.names()


def test_a_version_below_one_breaks_the_definition_rules() -> None:
    assert demo(0).problems() == ["demo v0: version must be at least 1, not 0"]
    assert demo(1).problems() == []
