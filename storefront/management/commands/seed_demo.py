"""`manage.py seed_demo`: a demo catalogue, a staff user `admin` and a user `demo`. Idempotent."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from inventory.exceptions import ProductExists
from inventory.services import create_product

CATALOGUE = [
    ("BOOK-001", "The Saga Pattern, hardback", Decimal("39.90"), 500),
    ("MUG-002", "Compensating mug", Decimal("12.50"), 1000),
    ("TSHIRT-003", "Eventually consistent T-shirt", Decimal("24.00"), 300),
    ("LAMP-004", "Idempotent desk lamp", Decimal("59.00"), 50),
    ("RARE-005", "Limited edition print (scarce)", Decimal("120.00"), 5),
]


class Command(BaseCommand):
    help = "Create the demo catalogue and users (admin, demo) and print their API tokens."

    def handle(self, *args: Any, **options: Any) -> None:
        # Each product is its own Inventory Service transaction and the users are one in the
        # default database: no transaction spans two databases. Every part is idempotent, so a
        # run cut short is completed by the next.
        created = 0
        for sku, name, price, stock in CATALOGUE:
            try:
                create_product(sku=sku, name=name, price=price, currency="EUR", stock=stock)
                created += 1
            except ProductExists:
                pass
        with transaction.atomic():
            tokens = {
                "admin": self._user("admin", os.environ.get("DEMO_ADMIN_PASSWORD", "admin"), True),
                "demo": self._user("demo", os.environ.get("DEMO_USER_PASSWORD", "demo"), False),
            }
        self.stdout.write(
            f"catalogue: {created} products created, {len(CATALOGUE) - created} already there"
        )
        for username, token in tokens.items():
            self.stdout.write(f"user {username}: API token {token}")

    def _user(self, username: str, password: str, staff: bool) -> str:
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            user = users.create_user(
                username=username, password=password, is_staff=staff, is_superuser=staff
            )
        token, _ = Token.objects.get_or_create(user=user)
        return token.key
