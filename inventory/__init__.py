"""Inventory Service: products, stock and reservations; reserve and release."""
