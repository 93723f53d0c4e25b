"""Shipping Service: shipments; schedule and cancel."""
