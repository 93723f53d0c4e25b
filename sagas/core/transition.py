"""The transition function: given a saga's state and one input, decide the next state and sends.

`decide` is pure: time and randomness come in as arguments, commands and log entries go out as
data. The rules it enforces (docs/architecture.md §4):

- a step runs when every step it depends on has succeeded; independent steps run together;
- a reply is matched by (step, action|compensation), not by attempt, since every attempt carries
  the same idempotency key; only a *fault* is tied to its attempt, so a stale fault is ignored;
- no reply before the deadline is not a failure: the same command is sent again, each time
  waiting twice as long (up to four deadlines), and only when the step's attempts are exhausted
  does the saga turn back (`service_unavailable`);
- turning back compensates every step that was sent and not refused, in-flight ones included
  (the service tombstones a compensation that beats its action), children before parents;
- once the pivot has succeeded the saga only goes forward; a retriable step that runs out of
  attempts, like a compensation that does, parks the saga as `stuck` for an operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sagas.core.definition import SagaDefinition, Step, StepKind
from sagas.core.state import (
    EventKind,
    LogEvent,
    SagaState,
    SagaStatus,
    Send,
    StepState,
    StepStatus,
)
from sagas.messages import Outcome, Reply

SERVICE_UNAVAILABLE = "service_unavailable"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Replied:
    step: str
    compensation: bool
    attempt: int
    outcome: Outcome
    code: str = ""
    message: str = ""

    @classmethod
    def of(cls, reply: Reply) -> Replied:
        """The input a service's reply makes (its data is the service's, not the saga's)."""
        return cls(
            reply.step, reply.compensation, reply.attempt, reply.outcome, reply.code, reply.message
        )


@dataclass(frozen=True)
class Tick:
    """Time has passed: deadlines and backoffs due by `now` are acted on."""


@dataclass(frozen=True)
class Cancel:
    """An operator asks the saga to compensate."""

    message: str = "cancelled by an operator"


@dataclass(frozen=True)
class Resume:
    """An operator grants stalled steps a fresh round of attempts."""


Input = Start | Replied | Tick | Cancel | Resume


@dataclass
class Decision:
    state: SagaState
    sends: list[Send] = field(default_factory=list)
    log: list[LogEvent] = field(default_factory=list)
    rejected: str = ""  # why an operator input could not be applied ("" if it was)


def decide(
    definition: SagaDefinition,
    state: SagaState,
    event: Input,
    now: float,
    rand: Callable[[], float],
) -> Decision:
    """Apply one input to a copy of `state`; `rand()` returns floats in [0, 1) for jitter."""
    decider = _Decider(definition, Decision(state.copy()), now, rand)
    decider.apply(event)
    return decider.decision


class _Decider:
    def __init__(
        self, definition: SagaDefinition, decision: Decision, now: float, rand: Callable[[], float]
    ) -> None:
        self.definition = definition
        self.decision = decision
        self.state = decision.state
        self.now = now
        self.rand = rand

    # --- inputs -----------------------------------------------------------------------------

    def apply(self, event: Input) -> None:
        if isinstance(event, Cancel | Resume):
            if not self._applies(event):
                return
        elif self.state.status.terminal:
            if isinstance(event, Replied):
                self._log(
                    EventKind.REPLY_IGNORED, event.step, event.attempt, reason="saga finished"
                )
            return
        if isinstance(event, Start):
            if self.state.status is SagaStatus.PENDING and not any(
                s.attempts for s in self.state.steps.values()
            ):
                self._log(EventKind.SAGA_STARTED)
        elif isinstance(event, Replied):
            self._on_reply(event)
        elif isinstance(event, Tick):
            self._on_tick()
        elif isinstance(event, Cancel):
            self._turn_back(CANCELLED, event.message)
        elif isinstance(event, Resume):
            self._on_resume()
        self._advance(replied=isinstance(event, Replied))

    def _applies(self, action: Cancel | Resume) -> bool:
        """Whether an operator's action applies to the saga as it is.

        It does not when it is a repeat of an action already taken (nothing changes, and that is
        no error), or when it cannot apply (`decision.rejected` says why):

        - Cancel applies to a saga going forward that has not passed its pivot. A saga an
          operator already cancelled (compensating, stuck while compensating, or failed with
          reason `cancelled`) repeats. A completed saga, one past its pivot, and one already
          turning back for another reason (a refusal, exhausted retries) reject it.
        - Resume applies to a stuck saga. A saga that an operator already resumed and that is
          in flight again repeats. Any other saga rejects it: it was never stuck, or it has
          finished since. (A resume is remembered by the round it granted a stalled step; a
          saga the engine parked had none, so once resumed it is simply not stuck.)
        """
        state = self.state
        if isinstance(action, Cancel):
            if state.reason_code == CANCELLED:
                return False
            if state.status is SagaStatus.COMPLETED:
                self.decision.rejected = "the saga is already completed"
            elif state.status is SagaStatus.FAILED:
                self.decision.rejected = f"the saga has already failed ({state.reason_code})"
            elif state.backward:
                self.decision.rejected = f"the saga is already turning back ({state.reason_code})"
            elif self._past_pivot():
                self.decision.rejected = "the saga is past its pivot and can only go forward"
            return not self.decision.rejected
        if state.status is SagaStatus.STUCK:
            return True
        resumed_before = any(st.retry_base or st.compensation_base for st in state.steps.values())
        if resumed_before and not state.status.terminal:
            return False
        self.decision.rejected = f"the saga is {state.status.value}, not stuck: nothing to retry"
        return False

    def _on_reply(self, reply: Replied) -> None:
        step, st = self.definition.step(reply.step), self.state.steps[reply.step]
        expected = StepStatus.COMPENSATING if reply.compensation else StepStatus.RUNNING
        sent = st.compensation_attempts if reply.compensation else st.attempts
        if st.status is not expected or sent == 0:
            self._ignore(reply, f"step is {st.status.value}")
            return
        if reply.outcome is Outcome.OK:
            st.status = StepStatus.COMPENSATED if reply.compensation else StepStatus.SUCCEEDED
            st.due, st.stalled, st.error = None, False, ""
            self._log(
                EventKind.STEP_COMPENSATED if reply.compensation else EventKind.STEP_SUCCEEDED,
                step.name,
                reply.attempt,
            )
            return
        refusal = reply.outcome is Outcome.REFUSED
        if refusal and not reply.compensation and step.kind is not StepKind.RETRIABLE:
            st.status, st.due, st.error = StepStatus.REFUSED, None, reply.code
            self._log(
                EventKind.STEP_REFUSED,
                step.name,
                reply.attempt,
                code=reply.code,
                message=reply.message,
            )
            self._turn_back(reply.code, reply.message)
            return
        # A fault (or a refusal where none is allowed): retry under the policy.
        if reply.attempt != sent:
            self._ignore(reply, "stale attempt")
            return
        st.error = reply.code or reply.outcome.value
        self._log(
            EventKind.COMPENSATION_FAILED if reply.compensation else EventKind.STEP_FAILED,
            step.name,
            reply.attempt,
            code=reply.code,
            message=reply.message,
        )
        policy = step.compensation_retry if reply.compensation else step.retry
        if st.budget_used >= policy.max_attempts:
            self._exhausted(step, st)
        else:
            delay = policy.delay(st.budget_used, self.rand())
            st.due = self.now + delay
            self._log(EventKind.RETRY_SCHEDULED, step.name, reply.attempt, delay=round(delay, 3))

    def _ignore(self, reply: Replied, reason: str) -> None:
        self._log(
            EventKind.REPLY_IGNORED,
            reply.step,
            reply.attempt,
            outcome=reply.outcome.value,
            compensation=reply.compensation,
            reason=reason,
        )

    def _on_tick(self) -> None:
        for step in self.definition.steps:
            st = self.state.steps[step.name]
            if st.due is None or st.due > self.now or st.stalled:
                continue
            if st.status is StepStatus.RUNNING:
                if st.budget_used >= step.retry.max_attempts:
                    self._exhausted(step, st)
                else:
                    self._send(step, st, compensation=False)
            elif st.status is StepStatus.COMPENSATING and st.compensation_attempts:
                if st.budget_used >= step.compensation_retry.max_attempts:
                    self._exhausted(step, st)
                else:
                    self._send(step, st, compensation=True)

    def _past_pivot(self) -> bool:
        pivot = next((s for s in self.definition.steps if s.kind is StepKind.PIVOT), None)
        return pivot is not None and self.state.steps[pivot.name].status is StepStatus.SUCCEEDED

    def _on_resume(self) -> None:
        # A saga the engine parked after an error is stuck with no stalled step: resuming it
        # only acts on its timers and settles its status again.
        for name, st in self.state.steps.items():
            if st.stalled:
                st.stalled = False
                st.retry_base, st.compensation_base = st.attempts, st.compensation_attempts
                st.due = self.now
                self._log(EventKind.STEP_RESUMED, name, st.budget_used)
        self._on_tick()

    # --- rules ------------------------------------------------------------------------------

    def _exhausted(self, step: Step, st: StepState) -> None:
        if st.status is StepStatus.RUNNING and step.kind is not StepKind.RETRIABLE:
            st.error = SERVICE_UNAVAILABLE
            self._log(EventKind.STEP_EXHAUSTED, step.name, st.attempts)
            self._turn_back(
                SERVICE_UNAVAILABLE, f"{step.name} did not succeed after {st.attempts} attempts"
            )
        else:
            st.stalled, st.due = True, None
            self._log(
                EventKind.STEP_STALLED,
                step.name,
                st.attempts if st.status is StepStatus.RUNNING else st.compensation_attempts,
            )

    def _turn_back(self, code: str, message: str) -> None:
        if self.state.backward:
            return
        self.state.reason_code, self.state.reason_message = code, message
        for st in self.state.steps.values():
            if st.status in (StepStatus.RUNNING, StepStatus.SUCCEEDED):
                # In flight or done: undo it. A compensation that beats its action tombstones it.
                st.status, st.due, st.stalled = StepStatus.COMPENSATING, None, False
            elif st.status is StepStatus.PENDING:
                st.status = StepStatus.SKIPPED
        self._log(EventKind.COMPENSATION_STARTED, code=code, message=message)

    def _advance(self, replied: bool) -> None:
        steps, state = self.definition.steps, self.state
        if not state.backward:
            for step in steps:
                st = state.steps[step.name]
                if st.status is StepStatus.PENDING and all(
                    state.steps[d].status is StepStatus.SUCCEEDED for d in step.depends_on
                ):
                    self._send(step, st, compensation=False)
        else:
            unsettled = (StepStatus.RUNNING, StepStatus.SUCCEEDED, StepStatus.COMPENSATING)
            for step in reversed(steps):
                st = state.steps[step.name]
                if (
                    st.status is StepStatus.COMPENSATING
                    and not st.compensation_attempts
                    and all(
                        state.steps[d.name].status not in unsettled
                        for d in self.definition.dependents(step.name)
                    )
                ):
                    self._send(step, st, compensation=True)
        self._settle_status(replied)

    def _settle_status(self, replied: bool) -> None:
        """A saga is `pending` until its first reply, then `running` (or further along)."""
        state, before = self.state, self.state.status
        statuses = [st.status for st in state.steps.values()]
        if state.backward and StepStatus.COMPENSATING not in statuses:
            state.status = SagaStatus.FAILED
        elif not state.backward and all(s is StepStatus.SUCCEEDED for s in statuses):
            state.status = SagaStatus.COMPLETED
        elif any(st.stalled for st in state.steps.values()):
            state.status = SagaStatus.STUCK
        elif state.backward:
            state.status = SagaStatus.COMPENSATING
        elif replied or before is not SagaStatus.PENDING:
            state.status = SagaStatus.RUNNING
        if state.status is not before:
            detail = {"code": state.reason_code} if state.reason_code else {}
            self.decision.log.append(LogEvent(EventKind.entered(state.status), detail=detail))

    def _send(self, step: Step, st: StepState, compensation: bool) -> None:
        if compensation:
            assert step.compensation is not None
            st.compensation_attempts += 1
            attempt, command = st.compensation_attempts, step.compensation
        else:
            st.attempts += 1
            attempt, command = st.attempts, step.action
            st.status = StepStatus.RUNNING
        st.due = self.now + step.deadline_of(st.budget_used)
        self.decision.sends.append(Send(step.name, command, compensation, attempt))
        self._log(
            EventKind.COMPENSATION_SENT if compensation else EventKind.STEP_SENT, step.name, attempt
        )

    def _log(self, kind: EventKind, step: str = "", attempt: int = 0, **detail: object) -> None:
        self.decision.log.append(LogEvent(kind, step, attempt, dict(detail)))
