"""Order Service: the orders and order lines it owns; create, cancel and approve an order."""
