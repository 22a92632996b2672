"""Unit tests of the transport's pieces that need no socket: codec, batching, stores, sessions, config."""

import logging
import os
import shutil
import struct
import time
import tracemalloc

import ml_dtypes
import msgpack
import numpy as np
import pytest
import zmq

from serl_launcher.transport import QueuedDataStore, TrainerConfig, codec, keys, limits, protocol, pytree
from serl_launcher.transport.config import describe_mismatch, fingerprint, shared_view
from serl_launcher.transport.errors import DecodeError, MessageTooLarge
from serl_launcher.transport.protocol import Rejected
from serl_launcher.transport.sessions import SessionTable
from serl_launcher.common.throttled_log import ThrottledLog


def test_codec_round_trips_plain_data_and_arrays_exactly():
    rng = np.random.default_rng(0)
    tree = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "bf16": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        "empty": np.zeros((0, 7), np.int16),
        "bools": np.array([True, False]),
        "scalar": np.float32(0.1),
        "zero_d": np.array(7, np.uint8),
        "noncontiguous": np.arange(12, dtype=np.int64).reshape(3, 4).T,
        "plain": [1, -2.5, "text", b"raw", None, True, {"nested": [np.int32(3)]}],
    }
    out = codec.decode(codec.encode(tree))
    assert out.keys() == tree.keys()
    for key in ("f32", "bf16", "empty", "bools", "zero_d", "noncontiguous"):
        assert out[key].dtype == tree[key].dtype and out[key].shape == tree[key].shape
        assert out[key].tobytes() == np.ascontiguousarray(tree[key]).tobytes()
        assert out[key].flags.writeable
    assert type(out["scalar"]) is np.float32 and out["scalar"] == tree["scalar"]
    assert out["plain"][:6] == [1, -2.5, "text", b"raw", None, True]
    assert type(out["plain"][6]["nested"][0]) is np.int32


def test_codec_converts_mappings_tuples_and_array_likes():
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.arange(3, dtype=np.float32)

    class FrozenMapping(dict):
        pass

    out = codec.decode(codec.encode({"m": FrozenMapping(a=1), "t": (1, 2), "x": ArrayLike()}))
    assert out["m"] == {"a": 1} and out["t"] == [1, 2]
    np.testing.assert_array_equal(out["x"], np.arange(3, dtype=np.float32))


@pytest.mark.parametrize("value", [np.array([object()]), np.array(["text"]), object()])
def test_codec_refuses_to_encode_unsafe_or_unsupported_values(value):
    with pytest.raises(TypeError):
        codec.encode(value)


def _frame(skeleton: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<I", len(skeleton)) + skeleton + data


def _array(flags, name, shape, data):
    header = bytes([flags, len(name)]) + name + bytes([len(shape)]) + b"".join(d.to_bytes(8, "little") for d in shape)
    return _frame(msgpack.packb(msgpack.ExtType(1, header)), data)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x00\x00", "too short"),
        (b"\xff\xff\xff\x00garbage", "too short"),
        (_frame(b"\xc1\xff\x00garbage"), "malformed"),
        (_frame(msgpack.packb({"a": 1}) + b"\x01"), "extra data"),
        (_frame(msgpack.packb({"a": 1}), b"\x00"), "1 bytes after the last array"),
        (_frame(msgpack.packb(msgpack.ExtType(7, b"x"))), "unknown msgpack extension"),
        (_array(0, b"object", (1,), b"\x00" * 8), "dtype 'object' is not allowed"),
        (_array(0, b"float32", (4,), b"\x00" * 15), "needs 16 bytes"),
        (_array(0, b"float32", (4,), b"\x00" * 17), "1 bytes after the last array"),
        (_array(0, b"float32", (2**62, 2**62), b""), "needs"),
        (_array(0, b"bool", (2,), b"\x00\x02"), "other than 0 and 1"),
        (_array(4, b"float32", (), b"\x00" * 4), "bad array header"),
        (_frame(msgpack.packb(msgpack.ExtType(1, b"\x00\x07float"))), "truncated array header"),
        (_frame(msgpack.packb(msgpack.ExtType(1, b"\x00\x04int8\x00extra"))), "trailing bytes"),
        (_frame(b"\x91" * 100_000 + b"\xc0"), "StackError"),  # 100k nested lists
        (_frame(msgpack.packb({1: 2})), "map key"),
        (_frame(msgpack.packb({b"raw": 2})), "map keys must be str"),
        (_frame(msgpack.packb(msgpack.Timestamp(1))), "timestamps"),
        (_frame(msgpack.packb({"t": [0, msgpack.Timestamp(1)]})), "timestamps"),
        (_frame(msgpack.packb({"t": msgpack.Timestamp(1)})), "timestamps"),
    ],
)
def test_codec_rejects_malformed_or_unsafe_bytes(data, match):
    with pytest.raises(DecodeError, match=match):
        codec.decode(data)


@pytest.mark.parametrize("filler", [b"\x90", b"\x80", b"\x91\xc0"])  # [], {}, [None]
def test_decoding_containers_costs_a_bounded_multiple_of_the_message(filler):
    """8 MiB of empty lists grew the old learner by ~593 MB; now a 1 MiB skeleton is the limit and a
    message may hold one container per 4 bytes, so decoding never costs more than ~20x the message."""
    for size in (8 << 20, (1 << 20) - 5):
        count = size // len(filler)
        message = _frame(b"\xdd" + count.to_bytes(4, "big") + filler * count)
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError, match="non-array data"):
                codec.decode(message)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20 * (1 << 20), f"{peak / 2**20:.0f} MiB to refuse {size / 2**20:.0f} MiB"


def test_encode_refuses_what_the_peer_would_refuse_to_decode():
    with pytest.raises(MessageTooLarge, match="numpy arrays"):
        codec.encode([0.5] * (1 << 18))
    assert codec.decode(codec.encode({"big": np.zeros(1 << 20)}))["big"].shape == (1 << 20,)


def test_clip_bounds_huge_and_deeply_nested_values():
    deep = []
    for _ in range(10_000):
        deep = [deep]
    for value in ("x" * (32 << 20), b"x" * (32 << 20), deep, {str(i): i for i in range(10**5)}, 10**300):
        assert len(limits.clip(value)) <= limits.MAX_ECHO_CHARS
    assert limits.clip("short") == "'short'"


def test_throttled_log_keeps_the_first_lines_and_counts_the_rest(caplog):
    throttled = ThrottledLog(logging.getLogger("test.throttle"), interval_s=0.2, burst=3)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for i in range(100):
            throttled.log(logging.WARNING, "bad request %d", i)
        time.sleep(0.25)
        throttled.log(logging.WARNING, "bad request %d", 100)
    assert [r.getMessage() for r in caplog.records] == [
        "bad request 0",
        "bad request 1",
        "bad request 2",
        "(97 similar messages suppressed in the previous 0.2 s)",
        "bad request 100",
    ]


def test_stack_and_take_are_inverse_and_check_structure():
    items = [{"obs": {"a": np.full(2, i, np.float32)}, "r": float(i), "d": bool(i % 2)} for i in range(5)]
    stacked = pytree.stack(items)
    assert stacked["obs"]["a"].shape == (5, 2) and stacked["r"].dtype == np.float64 and stacked["d"].dtype == bool
    assert pytree.batch_length(stacked) == 5
    row = pytree.take(stacked, 3)
    assert row["r"] == 3.0 and row["d"] and row["obs"]["a"].tolist() == [3.0, 3.0]
    assert pytree.take(stacked, slice(2, None))["r"].tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="structure"):
        pytree.stack(items + [{"obs": {"a": np.zeros(2)}, "r": 0.0}])


def _nested(depth):
    tree = {"x": np.zeros(2)}
    for _ in range(depth):
        tree = {"n": tree}
    return tree


@pytest.mark.parametrize(
    "batch",
    [
        {"a": np.zeros(3), "b": np.zeros(4)},
        {"a": np.float32(1.0)},
        {"a": [1, 2]},
        {},
        {"a": {}},
        {"a": "text"},
        {"a": np.zeros((10**9, 0))},  # 10^9 rows of nothing: a 135-byte message that jammed a row-by-row store
        {"a": np.zeros((5, 0)), "b": {"c": np.zeros((5, 0, 3))}},
        {"a": np.zeros((0, 3))},
        {"a": np.zeros((limits.MAX_BATCH_ROWS + 1,), np.uint8)},
        _nested(1000),
    ],
)
def test_batch_length_rejects_inconsistent_or_absurd_batches(batch):
    with pytest.raises(ValueError):
        pytree.batch_length(batch)
    assert pytree.batch_length(_nested(20)) == 2


def test_queued_data_store_ids_and_eviction_follow_agentlace():
    store = QueuedDataStore(3)
    assert store.latest_data_id() == -1 and len(store) == 0 and store.get_latest_data(-1) == []
    for i in range(5):
        store.insert(i)
    assert store.latest_data_id() == 4 and len(store) == 3
    assert store.get_latest_data(-1) == [2, 3, 4]
    assert store.get_latest_data(2) == [3, 4]
    assert store.get_latest_data(4) == []
    assert store.get_latest_data_with_id(0) == (2, [2, 3, 4])
    assert store.get_latest_data_with_id(3) == (4, [4])


def test_default_batch_insert_takes_agentlace_list_and_inserts_in_order():
    store = QueuedDataStore(10)
    store.batch_insert([{"x": i} for i in range(4)])
    assert [r["x"] for r in store.get_latest_data(-1)] == [0, 1, 2, 3]


def _hello(session="s1", token="t1", next_id=0, dropped=0, rejected=0, name="actor_env"):
    return protocol.Hello({}, name, session, token, next_id, dropped, rejected)


def _batch(first_id, session="s1", dropped=0, rejected=0, name="actor_env"):
    return protocol.Batch(name, session, first_id, dropped, rejected, 0, {})


def test_session_table_skips_exactly_the_rows_already_stored():
    table, inserted = SessionTable(), []

    def deliver(session, first, n):
        def insert(skip):
            inserted.append((session, first + skip, n - skip))

        return table.deliver(_batch(first, session), n, b"route-" + session.encode(), insert)

    table.hello(_hello("s1"), b"route-s1")
    table.hello(_hello("s2", "t2"), b"route-s2")
    assert deliver("s1", 0, 10) == (9, 0)
    assert deliver("s1", 5, 10) == (14, 0)  # resend overlapping 5 rows
    assert deliver("s1", 0, 10) == (14, 0)  # full duplicate: nothing inserted
    assert deliver("s2", 0, 4) == (3, 0)  # another session (restarted actor): ids from 0 again
    assert inserted == [("s1", 0, 10), ("s1", 10, 5), ("s2", 0, 4)]
    stats = table.snapshot()
    assert stats["actor_env/s1"]["received"] == 15 and stats["actor_env/s1"]["duplicates"] == 15
    assert stats["actor_env/s2"]["received"] == 4


def test_session_table_records_nothing_when_insert_fails():
    table = SessionTable()
    table.hello(_hello(), b"r")

    def broken(skip):
        raise RuntimeError("buffer full")

    with pytest.raises(RuntimeError):
        table.deliver(_batch(0), 3, b"r", broken)
    assert table.deliver(_batch(0), 3, b"r", lambda skip: None) == (2, 0)
    stats = table.snapshot()["actor_env/s1"]
    assert stats["received"] == 3 and stats["rejected_batches"] == 1


def test_session_table_accepts_data_only_from_the_connection_that_opened_the_session():
    table = SessionTable()
    with pytest.raises(Rejected) as info:
        table.deliver(_batch(0), 1, b"r", lambda skip: None)
    assert info.value.kind == protocol.UNKNOWN_SESSION
    table.hello(_hello(), b"owner")
    with pytest.raises(Rejected) as info:
        table.deliver(_batch(10**12), 1, b"intruder", lambda skip: None)
    assert info.value.kind == protocol.NOT_YOUR_SESSION
    with pytest.raises(Rejected) as info:  # re-binding needs the session's token
        table.hello(_hello(token="guess"), b"intruder")
    assert info.value.kind == protocol.NOT_YOUR_SESSION
    table.hello(_hello(), b"owner-reconnected")  # the owner, on a new connection, with its token
    assert table.deliver(_batch(0), 2, b"owner-reconnected", lambda skip: None) == (1, 0)


def test_session_ids_advance_only_by_what_the_actor_reports_lost_and_dropped_is_exact():
    table = SessionTable()
    table.hello(_hello(next_id=100, dropped=7), b"r")  # a session re-opened with a learner that restarted
    assert table.snapshot()["actor_env/s1"]["dropped"] == 7
    with pytest.raises(Rejected, match="skips 1 ids after 99, but the actor reports only 0"):
        table.deliver(_batch(101, dropped=7), 1, b"r", lambda skip: None)
    assert table.deliver(_batch(100, dropped=7), 100, b"r", lambda skip: None) == (199, 7)
    # The actor counted 150 evicted unacked, but 100..199 had been stored: only 50 are really lost.
    assert table.deliver(_batch(250, dropped=7 + 150), 1, b"r", lambda skip: None) == (250, 7 + 50)
    # A refused row skipped by the actor is reported as rejected, not dropped.
    assert table.deliver(_batch(252, dropped=57, rejected=1), 1, b"r", lambda skip: None) == (252, 57)
    stats = table.snapshot()["actor_env/s1"]
    assert stats["dropped"] == 57 and stats["rejected"] == 1 and stats["rejected_batches"] == 1


def test_session_table_is_bounded_and_never_forgets_a_delivering_session(monkeypatch):
    monkeypatch.setattr(limits, "MAX_SESSIONS", 20)
    table = SessionTable()
    table.hello(_hello("worker"), b"w")
    table.deliver(_batch(0, "worker"), 1, b"w", lambda skip: None)
    for i in range(500):  # a flood of handshakes that never deliver
        table.hello(_hello(f"flood{i}", "t"), b"x")
    stats = table.snapshot()
    assert len(stats) <= 20 and "actor_env/worker" in stats and "actor_env/flood499" in stats
    for i in range(19):  # a table full of sessions that all deliver: a new one is refused, none forgotten
        table.hello(_hello(f"busy{i}", "t"), b"b")
        table.deliver(_batch(0, f"busy{i}"), 1, b"b", lambda skip: None)
    with pytest.raises(Rejected) as info:
        table.hello(_hello("late", "t"), b"l")
    assert info.value.kind == protocol.BUSY and "actor_env/worker" in table.snapshot()


def test_config_fingerprint_covers_shared_fields_only():
    base = TrainerConfig(request_types=["b", "a"])
    assert fingerprint(base) == fingerprint(TrainerConfig(request_types=["a", "b"], bind_address="127.0.0.1"))
    assert fingerprint(base) != fingerprint(TrainerConfig(request_types=["a", "b"], version="2"))
    assert fingerprint(TrainerConfig(rate_limit=10)) == fingerprint(TrainerConfig(rate_limit=10.0))
    message = describe_mismatch(shared_view(base), shared_view(TrainerConfig(version="2")))
    assert "version" in message and "request_types" in message and "port_number" not in message


def test_compatibility_is_compared_key_by_key_and_listed_briefly():
    learner = TrainerConfig(compatibility={"obs": [10], "hidden": (256, 256), "env": "PandaPickCube-v0"})
    assert shared_view(learner)["compatibility"]["hidden"] == [256, 256]  # as it arrives from the wire
    assert fingerprint(learner) != fingerprint(TrainerConfig())
    actor = shared_view(TrainerConfig(compatibility={"obs": [12], "hidden": [256, 256], "extra": 1}))
    assert describe_mismatch(shared_view(learner), actor) == (
        "compatibility['env']: learner='PandaPickCube-v0' actor=None; "
        "compatibility['extra']: learner=None actor=1; compatibility['obs']: learner=[10] actor=[12]"
    )
    many = {f"key{i}": i for i in range(10**4)}
    message = describe_mismatch(shared_view(learner), {**many, "version": "x" * 10**6})
    assert message.endswith("; and 10000 more") and len(message) < 8 * 3 * limits.MAX_ECHO_CHARS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port_number": 0},
        {"port_number": 5, "broadcast_port": 5},
        {"request_types": ["__data__"]},
        {"max_request_bytes": 10},
        {"compatibility": {"obs": np.zeros(3)}},
        {"compatibility": {"x": float("nan")}},
        {"compatibility": [("not", "a dict")]},
    ],
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        TrainerConfig(**kwargs)


def test_authorizer_rereads_its_directory_and_fails_closed(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(keys, "RELOAD_S", 0.0)
    keys.main([str(tmp_path), "actor1", "actor2"])
    authorised = tmp_path / "authorised"
    authorised.mkdir()
    (authorised / "actor1.key").write_bytes((tmp_path / "actor1.key").read_bytes())
    ids = {name: keys.load_public_key(str(tmp_path / f"{name}.key")).decode() for name in ("actor1", "actor2")}
    ctx = zmq.Context()
    authorizer = keys.Authorizer(ctx, str(authorised))
    try:
        assert authorizer.allows(ids["actor1"]) and not authorizer.allows(ids["actor2"])
        (authorised / "actor2.key").write_bytes((tmp_path / "actor2.key").read_bytes())
        (authorised / "actor1.key").unlink()
        assert authorizer.allows(ids["actor2"]) and not authorizer.allows(ids["actor1"])
        shutil.rmtree(authorised)
        assert not authorizer.allows(ids["actor2"])
        assert "admitting nobody" in caplog.text
    finally:
        authorizer.stop()
        ctx.term()


def test_loading_a_secret_key_others_can_read_warns(tmp_path, caplog):
    keys.main([str(tmp_path), "learner"])
    keys.load_key_pair(str(tmp_path / "learner.key_secret"))
    assert "readable by other users" not in caplog.text
    os.chmod(tmp_path / "learner.key_secret", 0o644)
    keys.load_key_pair(str(tmp_path / "learner.key_secret"))
    assert "readable by other users: chmod 600 it" in caplog.text


def test_key_command_writes_loadable_key_pairs_with_owner_only_secrets(tmp_path, capsys):
    keys.main([str(tmp_path), "learner", "actor"])
    public = keys.load_public_key(str(tmp_path / "learner.key"))
    pair = keys.load_key_pair(str(tmp_path / "learner.key_secret"))
    assert pair[0] == public and len(pair[1]) == 40
    assert "actor" in capsys.readouterr().out
    for name in ("learner", "actor"):  # zmq.auth alone wrote them world-readable (0644)
        assert (tmp_path / f"{name}.key_secret").stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["actor.key", "actor.key_secret", "learner.key", "learner.key_secret"]
    with pytest.raises(ValueError, match="secret"):
        keys.load_key_pair(str(tmp_path / "actor.key"))
