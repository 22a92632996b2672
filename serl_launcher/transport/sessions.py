"""Per-actor progress and counters on the learner, keyed by (client name, session id).

Why: agentlace keeps one "last id" per store name, so a restarted actor (ids from
0 again) or a second actor under the same name has its data dropped as already
seen. Each TrainerClient instance has a random session id; ids are tracked per
session, so resends after a lost ack are skipped exactly and nothing else is.
"""

import threading
import time


class SessionTable:
    """Which transition ids of each actor session are stored, plus counters the learner can log."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions = {}

    def touch(self, name: str, session: str) -> dict:
        """Record that the session is alive (creating it at handshake); returns its counters."""
        with self._lock:
            counters = self._sessions.get((name, session))
            if counters is None:
                counters = self._sessions[(name, session)] = {
                    "name": name,
                    "session": session,
                    "received": 0,
                    "duplicates": 0,
                    "batches": 0,
                    "rejected_batches": 0,
                    "dropped": 0,
                    "pending": 0,
                    "last_id": -1,
                    "last_seen": 0.0,
                }
            counters["last_seen"] = time.time()
            return counters

    def deliver(self, name, session, first_id, n_rows, dropped, pending, insert) -> int:
        """Call insert(skip) with the number of leading rows already stored, then count; returns the acked id.

        If insert raises, nothing is recorded, so the actor resends the batch.
        """
        counters = self.touch(name, session)
        skip = min(n_rows, max(0, counters["last_id"] + 1 - first_id))
        try:
            if skip < n_rows:
                insert(skip)
        except Exception:
            with self._lock:
                counters["rejected_batches"] += 1
            raise
        with self._lock:
            counters["received"] += n_rows - skip
            counters["duplicates"] += skip
            counters["batches"] += 1
            counters["dropped"] = dropped
            counters["pending"] = pending
            counters["last_id"] = max(counters["last_id"], first_id + n_rows - 1)
            return counters["last_id"]

    def snapshot(self) -> dict:
        """{"name/session": counters} (a copy)."""
        with self._lock:
            return {f"{name}/{session}": dict(c) for (name, session), c in self._sessions.items()}
