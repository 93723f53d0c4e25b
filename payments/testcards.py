"""The industry's test card numbers, which the simulated card processor knows
(docs/architecture.md §6). The Payment Service decides what a charge of each does
(`services.TEST_CARDS`); the sample orders, the lab and the tests place orders with them."""

OK = "4242424242424242"  # the charge succeeds
DECLINED = "4000000000000002"  # refused: payment_declined
INSUFFICIENT_FUNDS = "4000000000009995"  # refused: insufficient_funds
PROCESSING_ERROR = "4000000000000119"  # a transient fault on every attempt: service_unavailable
