"""Serializers make their fields once per class (sagas.api.serializers.FieldsMadeOnce): each
instance still gets fields of its own, bound to it, nested ones included, and what one
instance does to its fields reaches neither the class's nor another instance's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sagas.api.serializers import FieldsMadeOnce
from storefront.api.serializers import OrderCreateSerializer, OrderSerializer
from storefront.samples import order_body


def nested_fields(serializer: Any) -> list[Any]:
    """Every field under `serializer`, depth first: nested serializers' and lists' children."""
    found = []
    for field in serializer.fields.values():
        found.append(field)
        child = getattr(field, "child", None)
        if child is not None:
            found.append(child)
            found += nested_fields(child)
        elif hasattr(field, "fields"):
            found += nested_fields(field)
    return found


def test_each_instance_has_fields_of_its_own_bound_to_it_at_every_depth() -> None:
    first: Any = OrderCreateSerializer(data={})
    second: Any = OrderCreateSerializer(data={})
    first_fields, second_fields = nested_fields(first), nested_fields(second)

    # items, its child and the child's two fields; payment and its four; the address and its
    # five; user_id
    assert len(first_fields) == len(second_fields) == 16
    assert not {id(field) for field in first_fields} & {id(field) for field in second_fields}
    assert all(field.root is first for field in first_fields)
    assert all(field.root is second for field in second_fields)
    items = first.fields["items"]
    assert items.child.parent is items and items.child.fields["sku"].parent is items.child
    assert first.fields["payment"].fields["cvc"].field_name == "cvc"


def test_the_fields_made_for_the_class_are_never_bound_to_an_instance() -> None:
    serializer: Any = OrderSerializer(context={"request": None})
    assert serializer.fields["steps"].child.fields["name"].root is serializer
    made: Any = FieldsMadeOnce._made[OrderSerializer]
    assert all(field.parent is None and field.field_name is None for field in made.values())
    assert made["steps"].child.parent is made["steps"]  # bound to its own list, as DRF does


def test_a_field_changed_on_one_instance_is_unchanged_on_the_next() -> None:
    changed: Any = OrderCreateSerializer(data={})
    changed.fields["payment"].fields["cvc"].required = False
    changed.fields["items"].child.fields["quantity"].max_value = 5

    fresh: Any = OrderCreateSerializer(data={})
    assert fresh.fields["payment"].fields["cvc"].required is True
    assert fresh.fields["items"].child.fields["quantity"].max_value == 1000


def test_instances_validating_at_once_in_threads_keep_their_own_errors() -> None:
    good = order_body(card="4242424242424242")

    def validate(n: int) -> tuple[bool, Any]:
        body = {**good, "items": [{"sku": "MUG-002", "quantity": n}]}
        serializer = OrderCreateSerializer(data=body)
        return serializer.is_valid(), serializer.errors

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(validate, [1, 0] * 200))

    for n, (valid, errors) in zip([1, 0] * 200, outcomes, strict=True):
        if n == 1:
            assert (valid, errors) == (True, {})
        else:
            assert not valid
            assert errors == {
                "items": {0: {"quantity": ["Ensure this value is greater than or equal to 1."]}}
            }
