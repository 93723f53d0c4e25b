"""The Notification Service's one command: tell the customer their order is confirmed."""

from typing import Any
from uuid import UUID

from sagas.messages import Command
from tests.notices.models import Notice


def send(command: Command) -> dict[str, Any]:
    notice = Notice.objects.create(
        saga_id=UUID(command.saga_id), order_id=UUID(command.payload["order_id"])
    )
    return {"notice_id": notice.pk}
