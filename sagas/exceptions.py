"""The orchestrator's application errors, mapped to HTTP answers by the API's one handler."""


class SagaError(Exception):
    code = "saga_error"


class SagaNotFound(SagaError):
    code = "not_found"


class SagaActionRejected(SagaError):
    code = "action_rejected"
