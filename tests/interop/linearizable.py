"""A linearizability checker for one register kept in a znode: its data and
its version, read with sync + getData, written with setData (a blind write)
or with setData at an expected version (compare-and-set).

An operation is recorded with the time it was invoked and the time its
answer came back (both from one monotonic clock), and what the answer was:

- `read` -> (value, version) seen;
- `write` value -> the new version;
- `cas` value at expected version -> the new version, or `None` for
  BADVERSION (it had no effect);
- an operation whose answer never came (connection loss, a timeout) has an
  unknown outcome: it may have taken effect at any moment after it was
  invoked, or never. Reads with unknown outcome constrain nothing and may
  be left out of the history.

The history is linearizable if there is one order of (some of the unknown
and) all the answered operations that respects real time (an operation that
was answered before another was invoked comes first) and in which every
answer is what the register would have given. The search is Wing and
Gong's, with Lowe's memoisation of (operations done, register state): fine
for the few hundred operations of a few concurrent clients a test makes.

Pure: no I/O, unit-tested in test_linearizable_checker.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

# The register: (value, version).
State = tuple[bytes, int]

UNKNOWN = object()


@dataclass(frozen=True)
class Op:
    """One operation of one client. `result` is UNKNOWN when no answer came
    (then `returned` is ignored)."""

    client: int
    kind: str  # "read", "write" or "cas"
    invoked: float
    returned: float
    value: bytes | None = None  # written (write, cas)
    expected: int | None = None  # cas: the version it expects
    result: object = UNKNOWN  # read: (value, version); write/cas: new version; cas: None = BADVERSION

    @property
    def answered(self) -> bool:
        return self.result is not UNKNOWN

    @property
    def end(self) -> float:
        return self.returned if self.answered else math.inf

    def __str__(self) -> str:
        what = {
            "read": "read",
            "write": f"write {self.value!r}",
            "cas": f"cas {self.value!r} at v{self.expected}",
        }[self.kind]
        got = "?" if not self.answered else repr(self.result)
        return f"client {self.client}: {what} -> {got} [{self.invoked:.3f}, {self.end:.3f}]"


def apply(op: Op, state: State) -> Optional[State]:
    """The register after `op` if its answer is possible in `state`, else None."""
    value, version = state
    if op.kind == "read":
        return state if (not op.answered or op.result == state) else None
    if op.kind == "write":
        after = (op.value, version + 1)
    elif op.kind == "cas":
        if op.expected != version:
            # BADVERSION: no effect. An unknown cas that cannot apply is a no-op too.
            return state if (not op.answered or op.result is None) else None
        after = (op.value, version + 1)
    else:
        raise ValueError(f"unknown operation {op.kind!r}")
    if op.answered and op.result != after[1]:
        return None
    return after


@dataclass
class Verdict:
    ok: bool
    # When not ok: the longest linearizable prefix found, and the answered
    # operations none of which could come next.
    linearized: list[Op]
    stuck: list[Op]
    explored: int

    def explain(self, limit: int = 12) -> str:
        if self.ok:
            return f"linearizable ({self.explored} states explored)"
        lines = [f"NOT linearizable ({self.explored} states explored)"]
        lines.append("longest consistent order found ends with:")
        lines += [f"  {op}" for op in self.linearized[-limit:]]
        lines.append("none of these could come next:")
        lines += [f"  {op}" for op in self.stuck[:limit]]
        return "\n".join(lines)


def check(ops: list[Op], initial: State, max_states: int = 2_000_000) -> Verdict:
    """Whether `ops` (unknown reads may be included; they are dropped) is
    linearizable from `initial`. Raises RuntimeError past `max_states`."""
    ops = sorted((o for o in ops if o.answered or o.kind != "read"), key=lambda o: o.invoked)
    n = len(ops)
    must = 0  # the answered operations: all must be linearized
    for i, o in enumerate(ops):
        if o.answered:
            must |= 1 << i
    seen: set[tuple[int, State]] = set()
    best: list[int] = []
    best_stuck: list[int] = []
    explored = 0
    # Depth-first over (done mask, state, order so far), iteratively.
    stack: list[tuple[int, State, list[int]]] = [(0, initial, [])]
    while stack:
        done, state, order = stack.pop()
        if done & must == must:
            return Verdict(True, [ops[i] for i in order], [], explored)
        key = (done, state)
        if key in seen:
            continue
        seen.add(key)
        explored += 1
        if explored > max_states:
            raise RuntimeError(f"gave up after {max_states} states: history too concurrent")
        # Every pending answered operation must come before anything invoked after it
        # returned: the earliest return among them bounds what may come next.
        horizon = min((ops[i].end for i in range(n) if not done >> i & 1 and ops[i].answered), default=math.inf)
        moved = False
        for i in range(n):
            if done >> i & 1:
                continue
            o = ops[i]
            if o.invoked > horizon:
                break  # sorted by invocation: nothing later can come next either
            after = apply(o, state)
            if after is not None:
                moved = True
                stack.append((done | 1 << i, after, order + [i]))
        if not moved and len(order) >= len(best):
            best = order
            best_stuck = [i for i in range(n) if not done >> i & 1 and ops[i].answered and ops[i].invoked <= horizon]
    return Verdict(False, [ops[i] for i in best], [ops[i] for i in best_stuck], explored)
