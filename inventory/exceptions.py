"""Errors of the Inventory Service: the out-of-stock refusal and catalogue input errors."""

from sagas.participant import Refusal


class OutOfStock(Refusal):
    """Not enough stock for a line (an unknown SKU has none)."""

    code = "out_of_stock"


class ProductExists(ValueError):
    """A product with this SKU is already in the catalogue."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"a product with SKU {sku!r} already exists")
        self.sku = sku
