"""Lost updates of lock-free training, counted on paper (the lecture's race, as an exercise).

A Hogwild! worker reads the weights, computes its gradient and writes ``w += delta``
without a lock. The shared-memory trainer (``hogwild.py``) counts what happens to a
shared counter that every update increments without a lock: the increment *loads* the
counter when the write begins and *stores* ``loaded + 1`` when it ends. Two writes that
overlap load the same value, so one increment is lost. ``hogwild.replay_schedule`` runs a
schedule in real processes; ``lost_increments`` below is the same count on paper.

A schedule is a list of ``(worker, op)`` with op in ``"read"``, ``"begin"``, ``"end"``;
each update of a worker is read, begin, end, in that order.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lost_increments"]

_OPS = ("read", "begin", "end")


def lost_increments(schedule) -> int:
    """How many increments of the unlocked shared counter a schedule loses.

    Simulates the counter: at a worker's ``begin`` it loads the current value, at its
    ``end`` it stores ``loaded + 1``. Returns ``updates - final counter`` (an int >= 0),
    where ``updates`` counts the ``end`` entries.

    Example: ``[(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")]``
    loses 1 (both writes loaded 0).

    Raises:
        ValueError: an entry that is not ``(int worker >= 0, op)``, or an ``end`` without its ``begin``.
    """
    schedule = list(schedule)  # a generator would be spent by the check below
    for i, entry in enumerate(schedule):
        if (not isinstance(entry, (tuple, list)) or len(entry) != 2 or not isinstance(entry[0], (int, np.integer))
                or isinstance(entry[0], bool) or entry[0] < 0 or entry[1] not in _OPS):
            raise ValueError(f"lost_increments: entry {i} must be (worker >= 0, one of {_OPS}), got {entry!r}")
    # BEGIN SOLUTION
    counter, updates, loaded = 0, 0, {}
    for i, (worker, op) in enumerate(schedule):
        if op == "begin":
            loaded[worker] = counter
        elif op == "end":
            if worker not in loaded:
                raise ValueError(f"lost_increments: entry {i} ends an update of worker {worker} that never began")
            counter = loaded.pop(worker) + 1
            updates += 1
    return updates - counter
    # END SOLUTION
