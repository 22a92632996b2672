"""Actor sessions on the learner: who may deliver for a session, which of its ids are stored, counters to log.

Why sessions: agentlace keeps one "last id" per store name, so a restarted actor
(ids from 0 again) or a second actor under the same name has its data dropped as
already seen. Each TrainerClient instance has a random session id; ids are
tracked per session, so resends after a lost ack are skipped exactly.

Why a session is bound to a connection: session ids are not secret (they are
logged and key client_stats()), so otherwise anyone knowing one could send
first_id=10**12 for it and have that actor's next rows acked but discarded. The
handshake opens a session with a secret token only its client knows; batches
are accepted only from the connection (ROUTER routing id) of the latest
handshake, and a client whose connection changed handshakes again with the token.

Why ids are checked: a batch may skip ids only by as many as the actor reports
it lost from its own queue (`dropped`) or skipped because the store refused
them (`rejected`), both cumulative. So no id jump hides rows silently, and the
learner's count of ids never stored, minus `rejected`, is the exact number of
rows the actor lost; it goes back in every ack.

Why the table is bounded: handshakes cost nothing to send. At most
limits.MAX_SESSIONS are kept; when full, the least recently seen sessions that
never delivered or are idle over limits.SESSION_IDLE_S are forgotten first (a
forgotten client handshakes again, transparently); one that delivered within
that time is never forgotten: the handshake is refused (BUSY) instead.
"""

import hashlib
import hmac
import threading
import time
from collections import OrderedDict

from serl_launcher.transport import limits, protocol
from serl_launcher.transport.protocol import Rejected

_PRUNE_TO = 0.9  # a full table is pruned to this fraction, so pruning is rare under a flood


class _Session:
    __slots__ = ("token", "route", "skipped", "delivered", "counters")

    def __init__(self, name: str, session: str, token: bytes, route: bytes, next_id: int, skipped: int):
        self.token = token
        self.route = route
        self.skipped = skipped  # ids never stored: gaps seen, plus what the actor had lost before this session
        self.delivered = False
        self.counters = {
            "name": name,
            "session": session,
            "received": 0,
            "duplicates": 0,
            "batches": 0,
            "rejected_batches": 0,
            "dropped": 0,
            "rejected": 0,
            "pending": 0,
            "last_id": next_id - 1,
            "last_seen": time.time(),
        }


class SessionTable:
    """Which transition ids of each actor session are stored, who may send for it, and counters to log."""

    def __init__(self):
        self._max_sessions = limits.MAX_SESSIONS
        self._idle_s = limits.SESSION_IDLE_S
        self._lock = threading.Lock()
        self._sessions = OrderedDict()  # (name, session) -> _Session, least recently seen first

    def hello(self, hello: protocol.Hello, route: bytes) -> None:
        """Open a session for the connection `route`, or re-bind an existing one given its token."""
        key, token = (hello.name, hello.session), hashlib.sha256(hello.token.encode()).digest()
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                if not hmac.compare_digest(session.token, token):
                    raise Rejected(
                        protocol.NOT_YOUR_SESSION, f"session {hello.session!r} belongs to another actor (wrong token)"
                    )
                session.route = route
                self._seen(key, session)
                return
            if len(self._sessions) >= self._max_sessions:
                self._prune()
            if len(self._sessions) >= self._max_sessions:
                raise Rejected(protocol.BUSY, f"the learner tracks {len(self._sessions)} active actor sessions already")
            self._sessions[key] = _Session(
                hello.name, hello.session, token, route, hello.next_id, hello.dropped + hello.rejected
            )
            self._sessions[key].counters["dropped"] = hello.dropped
            self._sessions[key].counters["rejected"] = hello.rejected

    def deliver(self, batch: protocol.Batch, n_rows: int, route: bytes, insert) -> tuple:
        """Call insert(skip) with the number of leading rows already stored; returns (acked id, exact dropped).

        If insert raises, nothing is recorded, so the actor can resend the batch.
        """
        key = (batch.name, batch.session)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                raise Rejected(protocol.UNKNOWN_SESSION, f"no session {batch.session!r} (learner restarted?)")
            if session.route != route:
                raise Rejected(protocol.NOT_YOUR_SESSION, f"session {batch.session!r} was opened by another connection")
            last_id = session.counters["last_id"]
            gap = batch.first_id - (last_id + 1)
            allowance = batch.dropped + batch.rejected - session.skipped
            if gap > allowance:
                session.counters["rejected_batches"] += 1
                raise Rejected(
                    "bad_request",
                    f"first_id {batch.first_id} skips {gap} ids after {last_id}, but the actor reports "
                    f"only {max(allowance, 0)} more transitions dropped or rejected",
                )
            skip = min(n_rows, max(0, last_id + 1 - batch.first_id))
            self._seen(key, session)
        try:
            if skip < n_rows:
                insert(skip)
        except Exception:
            with self._lock:
                session.counters["rejected_batches"] += 1
            raise
        with self._lock:
            session.skipped += max(gap, 0)
            session.delivered = True
            counters = session.counters
            counters["received"] += n_rows - skip
            counters["duplicates"] += skip
            counters["batches"] += 1
            counters["dropped"] = session.skipped - batch.rejected
            counters["rejected"] = batch.rejected
            counters["pending"] = batch.pending
            counters["last_id"] = max(last_id, batch.first_id + n_rows - 1)
            return counters["last_id"], counters["dropped"]

    def snapshot(self) -> dict:
        """{"name/session": counters} (a copy)."""
        with self._lock:
            return {f"{name}/{session}": dict(s.counters) for (name, session), s in self._sessions.items()}

    def _seen(self, key: tuple, session: _Session) -> None:
        session.counters["last_seen"] = time.time()
        self._sessions.move_to_end(key)

    def _prune(self) -> None:
        """Forget sessions idle too long or that never delivered, least recently seen first."""
        target = int(self._max_sessions * _PRUNE_TO)
        idle_before = time.time() - self._idle_s
        for key in list(self._sessions):
            if len(self._sessions) <= target:
                return
            session = self._sessions[key]
            if not session.delivered or session.counters["last_seen"] < idle_before:
                del self._sessions[key]
