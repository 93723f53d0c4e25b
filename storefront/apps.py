"""The storefront: what a shop adds on top of the saga engine (checkout, the order API)."""

from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"
    verbose_name = "Storefront"
    default_auto_field = "django.db.models.BigAutoField"
