"""The check at start-up that the event log holds every acknowledged event after the snapshot.

Recovery is "the newest valid snapshot, then every event after its sequence number". It loses
nothing only if the log holds each of those events: it must reach the highest sequence number
ever acknowledged (the larger of the snapshot's and ``DIR/seq``'s, ``seqmark.py``) and have no
gap after the snapshot. A log that fails either was damaged (a write-ahead log cut short, a file
restored from an old copy, rows removed): starting anyway would lose acknowledged events
silently and then hand their sequence numbers to new events, which the learner, already past
them, would never learn. So the server stops and names what is missing, unless the operator
accepts the loss (``--accept-event-loss``): then it learns what is left and numbers new events
after the highest number ever used.
"""

from __future__ import annotations

import logging

from shoal.serve.errors import StateDirError
from shoal.serve.state.eventlog import EventLog
from shoal.serve.state.snapshots import Version

log = logging.getLogger("shoal.serve")


def _ranges(missing: list[tuple[int, int]]) -> str:
    shown = [f"event {a}" if a == b else f"events {a} to {b}" for a, b in missing[:5]]
    return ", ".join(shown) + (", ..." if len(missing) > 5 else "")


def check_log(events: EventLog, snapshot: Version, accept: bool) -> int | None:
    """None if the log holds every event after ``snapshot``; else, with ``accept``, the highest
    sequence number ever used (the learner skips to it); else ``StateDirError``."""
    mark = events.mark.value if events.mark is not None else 0
    highest = max(snapshot.applied_seq, mark)
    missing = events.missing(snapshot.applied_seq)
    last = events.last_seq
    if last < highest:
        missing.append((max(last, snapshot.applied_seq) + 1, highest))
        if last < snapshot.applied_seq:  # the log lost its end; the snapshot holds those
            missing.insert(0, (last + 1, snapshot.applied_seq))
    missing = [(a, b) for a, b in missing if a <= b]
    if not missing:
        return None
    what = (
        f"the event log {events.path} lacks {_ranges(missing)} (snapshot v{snapshot.version} "
        f"holds the events up to {snapshot.applied_seq}; events up to {highest} were "
        f"acknowledged; the log ends at {last})"
    )
    if not accept:
        raise StateDirError(
            f"{what}: it was damaged, and starting would lose acknowledged events. Restore "
            "events.sqlite and events.sqlite-wal from a backup, or restart with "
            "--accept-event-loss to learn what is left and go on"
        )
    log.warning("%s: accepted (--accept-event-loss); new events are numbered from %d",
                what, max(highest, last) + 1)  # fmt: skip
    return max(highest, last)
