"""One style of state machine for every stateful model: a table of allowed moves and ``advance``.

Each app declares its machines next to its models (``apps/payments/statemachine.py``,
``apps/billing/states.py``, ``apps/vendors/states.py``) as a ``StateMachine`` over the model's
``Status`` choices, and a ``<model>_to(obj, target)`` function that services call to move a row:
an illegal move raises (``IllegalTransition``, or the app's own error) and changes nothing. A
move to the same state is allowed only where the table lists it. Creating a row in its first
state is not a move. The caller saves the row (in its transaction, under the row's lock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class IllegalTransition(Exception):
    """A move the machine does not allow; the object is left as it was."""

    def __init__(self, obj: object, current: str, target: str):
        super().__init__(
            f"{type(obj).__name__} {getattr(obj, 'pk', '?')} cannot go from {current} to {target}"
        )
        self.obj = obj
        self.current = current
        self.target = target


ErrorFactory = Callable[[Any, str, str], Exception]


class StateMachine:
    """``transitions`` maps every state to the states it may move to (a terminal state maps to
    nothing). ``states``, when given (the model's ``Status.values``), must be exactly the states
    of the table, so a status added to a model without a row here fails at import. ``error``
    builds the exception an illegal move raises (default ``IllegalTransition``)."""

    def __init__(
        self,
        transitions: Mapping[str, Iterable[str]],
        *,
        states: Iterable[str] | None = None,
        field: str = "status",
        error: ErrorFactory | None = None,
    ):
        table = {str(state): frozenset(str(t) for t in targets) for state, targets in transitions.items()}
        unknown = {t for targets in table.values() for t in targets} - set(table)
        if unknown:
            raise ValueError(f"transitions lead to undeclared states: {sorted(unknown)}")
        if states is not None and set(map(str, states)) != set(table):
            raise ValueError(
                f"the transitions cover {sorted(table)}, the model has {sorted(map(str, states))}"
            )
        self.transitions: Mapping[str, frozenset[str]] = table
        self.field = field
        self._error: ErrorFactory = error or IllegalTransition

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self.transitions)

    def can(self, current: str, target: str) -> bool:
        """Whether ``current`` may move to ``target``."""
        return str(target) in self.transitions.get(str(current), frozenset())

    def terminal(self, state: str) -> bool:
        return not self.transitions.get(str(state))

    def advance(self, obj: Any, target: str) -> None:
        """Move ``obj`` to ``target`` (not saved), or raise the machine's error."""
        current = getattr(obj, self.field)
        if not self.can(current, target):
            raise self._error(obj, current, target)
        setattr(obj, self.field, target)
