"""Same-run comparison with a peer (SERL's serl_launcher, agentlace): the machinery every benchmark shares.

A benchmark declares *groups* (one fresh process per contestant measures one group: e.g. the
learner with a critic ensemble of 10) and the *figures* each group's process reports. `run()` then,
for every round, runs every group once per contestant, each time in a FRESH process, peer first:

    round 1: group A: peer, ours[, ours variants]; group B: peer, ours ...; round 2: ...

The peer runs with the peer venv's python (`--peer_python`, env SERL_PEERS_PYTHON, default
/tmp/serl-peers-venv/bin/python); ours with the python running the benchmark. Both are started
the same way, `python -I benchmarks/same_run.py --side {peer,ours} --module M --role R --kwargs JSON`,
from a temporary working directory outside the repositories, with the same environment: `-I`
keeps the working directory, the script's directory and PYTHONPATH off sys.path, then this file
puts our repository first on sys.path for `ours` only, and checks before and after the role
that `serl_launcher` / `agentlace` came from the peer venv (peer) or from this repository (ours).
The role, `role_<R>(meter, side, **kwargs)` in benchmarks/<M>.py, returns a dict; this runner
adds the load seen during the role's measured windows and the library versions, and prints it as
one JSON line (prefixed with RESULT_PREFIX). Role modules import jax and the libraries only inside
role functions, so one module serves both venvs.

Foreign load: `LoadMeter` (used by the role as `with meter:` around what it times) reads the
machine's busy CPU time from /proc/stat (user + nice + system + irq + softirq) and subtracts the
CPU time of the measured process (getrusage, all its threads, plus its reaped children) and of
the live child processes it tracks (/proc/<pid>/stat); the rest, divided by the window's length,
is the number of cores other processes used while we measured. A round whose process (ours or
the peer's) saw more than --max_foreign_cores (0.3) is discarded for that row; when every round
is, the rows are reported from all rounds and flagged DISTURBED.

Each figure is reported as the median of our values and of the peer's over the kept rounds, and
the median and range of the per-round ratios, oriented so that > 1 means ours is better.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.util
import json
import os
import queue
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_PEER_PYTHON = "/tmp/serl-peers-venv/bin/python"
PEER_PYTHON_ENV = "SERL_PEERS_PYTHON"
RESULT_PREFIX = "SAME_RUN_RESULT "
DEFAULT_MAX_FOREIGN_CORES = 0.3
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# Set in a role process by role_main(): which side and module it runs (spawn_role reuses them).
_SIDE: str | None = None
_MODULE: str | None = None


# --------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def print_header(title: str, lines: list[str] = ()) -> None:
    """Title, date and CPU model (figures only mean something with both), then `lines`."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(title)
    print(f"date: {now}   CPU: {cpu_model()}, {os.cpu_count()} logical CPUs   load average at start: {load}")
    for line in lines:
        print(line)
    sys.stdout.flush()


# ------------------------------------------------------------------------- load meter
def _machine_busy_s() -> float:
    with open("/proc/stat") as f:
        fields = f.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / _CLK_TCK


def _process_cpu_s(pid: int) -> float:
    """utime + stime of a live (or not yet reaped) process; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(")") + 2:].split()  # fields[0] is field 3 (state) of proc(5)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _self_and_reaped_children_s() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class LoadMeter:
    """CPU time used by other processes during the `with meter:` windows (accumulated over them).

    The measured side is this process (all threads), its reaped children, and the live child
    processes passed to track(). A tracked child reaped during a window is still counted once
    (its /proc entry goes, its time moves to RUSAGE_CHILDREN).
    """

    def __init__(self):
        self.window_s = self.busy_s = self.own_s = 0.0
        self._pids: list[int] = []
        self._start = None

    def track(self, pid: int) -> None:
        self._pids.append(pid)

    def __enter__(self):
        self._start = (time.perf_counter(), _machine_busy_s(), _self_and_reaped_children_s(),
                       {pid: _process_cpu_s(pid) for pid in self._pids})
        return self

    def __exit__(self, *exc):
        wall0, busy0, own0, pids0 = self._start
        children = sum(_process_cpu_s(pid) - pids0.get(pid, 0.0) for pid in self._pids)
        self.own_s += _self_and_reaped_children_s() - own0 + children
        self.busy_s += _machine_busy_s() - busy0
        self.window_s += time.perf_counter() - wall0
        self._start = None
        return False

    def summary(self) -> dict:
        if self.window_s <= 0:
            return {"window_s": 0.0, "foreign_cores": None}
        return {
            "window_s": round(self.window_s, 3),
            "machine_busy_cores": round(self.busy_s / self.window_s, 3),
            "own_cores": round(self.own_s / self.window_s, 3),
            "foreign_cores": round((self.busy_s - self.own_s) / self.window_s, 3),
        }


# ------------------------------------------------------------------- role processes
def free_ports(n: int) -> list[int]:
    """n TCP ports free on this machine right now (the same helper for both sides)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _role_command(python: str, side: str, module: str, role: str, kwargs: dict) -> list[str]:
    return [python, "-I", str(BENCH_DIR / "same_run.py"), "--side", side, "--module", module,
            "--role", role, "--kwargs", json.dumps(kwargs)]


def _role_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # SERL imports TensorFlow; same env for both sides
    return env


class RoleProcess:
    """A helper process started by a role (e.g. an actor next to the learner), same python and side.

    Talks over lines: the child prints `TAG text` with emit(), reads lines from stdin with
    wait_for(); its stderr goes to ours.
    """

    def __init__(self, role: str, kwargs: dict):
        if _SIDE is None:
            raise RuntimeError("spawn_role() is only available inside a role process")
        self.proc = subprocess.Popen(_role_command(sys.executable, _SIDE, _MODULE, role, kwargs),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env=_role_env())
        self.pid = self.proc.pid
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, tag: str, timeout: float) -> str | None:
        """The text after the next line starting with `tag ` (other lines are skipped); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                raise RuntimeError(f"helper process {self.pid} exited (rc {self.proc.wait()}) before sending {tag}")
            if line.startswith(tag + " ") or line == tag:
                return line[len(tag) + 1:]

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        text = self.expect(RESULT_PREFIX.strip(), timeout)
        if text is None:
            raise RuntimeError(f"helper process {self.pid} sent no result within {timeout} s")
        return json.loads(text)

    def finish(self, timeout: float = 30) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def spawn_role(role: str, **kwargs) -> RoleProcess:
    """Start role_<role>(**kwargs) of the current module in a new process of the same side."""
    return RoleProcess(role, kwargs)


def emit(tag: str, text: str = "") -> None:
    """In a helper process: one tagged line to the process that spawned it."""
    sys.stdout.write(f"{tag} {text}\n" if text else f"{tag}\n")
    sys.stdout.flush()


def wait_for(word: str) -> None:
    """In a helper process: block until the spawning process sends `word`; exit if it goes away."""
    for line in sys.stdin:
        if line.strip() == word:
            return
    raise SystemExit(f"the spawning process closed stdin before sending {word}")


def _is_within(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def _check_origins(side: str, root: Path = REPO_ROOT) -> dict:
    """Where serl_launcher / agentlace come from in this process; raises if from the wrong side."""
    origins = {}
    for name in ("serl_launcher", "agentlace"):
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module else None
        if origin is None:
            spec = importlib.util.find_spec(name)  # does not import it
            origin = spec.origin if spec is not None else None
        if origin is None:
            continue
        origins[name] = origin
        if side == "peer":
            ok = _is_within(origin, sys.prefix) and not _is_within(origin, str(REPO_ROOT))
            where = f"the peer venv {sys.prefix}"
        else:
            ok = name != "serl_launcher" or _is_within(origin, str(root))
            where = f"this repository {root}"
        if not ok:
            raise RuntimeError(f"{side} process imports {name} from {origin}, not from {where}")
    return origins


def _versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for name in ("jax", "jaxlib", "flax", "numpy", "zmq"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = module.__version__
    return versions


def role_main(argv: list[str]) -> None:
    """Entry point of a role process: run role_<role>(meter, side, **kwargs), print one JSON line."""
    global _SIDE, _MODULE
    parser = argparse.ArgumentParser(description="run one benchmark role (see benchmarks/same_run.py)")
    parser.add_argument("--side", choices=("ours", "peer"), required=True)
    parser.add_argument("--module", required=True, help="a module of benchmarks/, e.g. learner_throughput")
    parser.add_argument("--role", required=True, help="runs role_<ROLE> of that module")
    parser.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for the role")
    args = parser.parse_args(argv)
    _SIDE, _MODULE = args.side, args.module
    try:
        kwargs = json.loads(args.kwargs)
        root = Path(kwargs.pop(OURS_ROOT, REPO_ROOT))  # another checkout of ours, e.g. an older commit
        if args.side == "ours":
            sys.path.insert(0, str(root))
        _check_origins(args.side, root)
        role = getattr(importlib.import_module(args.module), "role_" + args.role)
        meter = LoadMeter()
        result = role(meter, side=args.side, **kwargs)
        result["load"] = meter.summary()
        result["origins"] = _check_origins(args.side, root)
        result["versions"] = _versions()
        sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        code = 0
    except BaseException:  # noqa: BLE001  (report anything, then exit without waiting on threads)
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        code = 1
    # Skip interpreter shutdown: libraries' non-daemon threads and ZeroMQ contexts can block it.
    os._exit(code)


# ----------------------------------------------------------------------- declarations
@dataclasses.dataclass(frozen=True)
class Figure:
    key: str  # key of the role's result
    label: str
    higher_is_better: bool
    fmt: str = ".2f"
    short: str = ""  # name in the per-process progress lines (default: label)


@dataclasses.dataclass(frozen=True)
class Group:
    """What one fresh process per contestant and round measures: role_<role>(**kwargs)."""

    name: str
    role: str
    kwargs: dict
    figures: tuple
    no_peer: str = ""  # why the peer cannot run this group (then only ours run it; no ratios)


@dataclasses.dataclass(frozen=True)
class Contestant:
    name: str  # shown in tables: "SERL", "ours", "ours chunked"
    side: str  # "peer" or "ours"
    python: str
    kwargs: dict = dataclasses.field(default_factory=dict)  # extra role kwargs (our variants)


OURS_ROOT = "ours_root"  # role kwarg consumed by role_main: the checkout an "ours" process imports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every same-run benchmark takes."""
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of fresh processes (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, short measurements")
    parser.add_argument("--peer_python", default=None,
                        help=f"python of the peer venv (default ${PEER_PYTHON_ENV} or {DEFAULT_PEER_PYTHON})")
    parser.add_argument("--max_foreign_cores", type=float, default=DEFAULT_MAX_FOREIGN_CORES,
                        help="discard a round when other processes used more cores than this while it measured")
    parser.add_argument("--process_timeout", type=float, default=1800, help="seconds allowed per process")
    parser.add_argument("--ours_tree", action="append", default=[], metavar="LABEL=PATH",
                        help="also measure another checkout of this project (e.g. `git worktree add /tmp/old "
                             "<commit>`), as a row 'ours LABEL' in the same run: regressions show as ratios")


def rounds(args) -> int:
    n = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    if n < 1:
        raise SystemExit("--rounds must be >= 1")
    return n


def contestants(args, peer_name: str, variants: list[tuple[str, dict]] = ()) -> tuple[list[Contestant], str]:
    """[peer (if its venv exists), ours, ours variants...] and a line saying where the peer is."""
    python = os.path.abspath(args.peer_python or os.environ.get(PEER_PYTHON_ENV) or DEFAULT_PEER_PYTHON)
    found = os.path.isfile(python) and os.access(python, os.X_OK)
    result = [Contestant(peer_name, "peer", python)] if found else []
    result.append(Contestant("ours", "ours", sys.executable))
    result += [Contestant(f"ours {label}", "ours", sys.executable, dict(kwargs)) for label, kwargs in variants]
    for tree in args.ours_tree:
        label, sep, path = tree.partition("=")
        if not sep or not Path(path, "serl_launcher").is_dir():
            raise SystemExit(f"--ours_tree {tree!r}: expected LABEL=PATH of a checkout of this project")
        result.append(Contestant(f"ours {label}", "ours", sys.executable, {OURS_ROOT: str(Path(path).resolve())}))
    if found:
        line = f"peer ({peer_name}): {python}   ours: {sys.executable} (this repository: {REPO_ROOT})"
    else:
        line = (f"PEER NOT MEASURED: no python at {python} (set --peer_python or ${PEER_PYTHON_ENV}; build it "
                f"with `bash ../shared/peers/setup.sh`). Our figures alone, no ratios.")
    return result, line


# ---------------------------------------------------------------------------- running
def _run_process(contestant: Contestant, module: str, group: Group, workdir: str, timeout: float) -> dict:
    kwargs = {**group.kwargs, **contestant.kwargs}
    command = _role_command(contestant.python, contestant.side, module, group.role, kwargs)
    try:
        done = subprocess.run(command, cwd=workdir, env=_role_env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {timeout:.0f} s", "stderr": str(exc.stderr or "")[-2000:]}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {"error": f"exit code {done.returncode}, no result", "stderr": done.stderr[-3000:]}


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _foreign(result: dict | None):
    if not result or "error" in result:
        return None
    load = result["load"]["foreign_cores"]
    return None if load is None else max(0.0, load)  # a few ticks below 0 are accounting noise


def run(title: str, module: str, groups: list[Group], args, peer_name: str,
        variants: list[tuple[str, dict]] = (), notes: list[str] = ()) -> dict:
    """Interleave fresh processes (peer first) over the rounds, then print the same-run tables.

    Exits with status 1 after the tables when any process failed.
    """
    n_rounds = rounds(args)
    people, peer_line = contestants(args, peer_name, variants)
    peer = people[0] if people[0].side == "peer" else None
    print_header(title, [peer_line, *notes,
                         f"{n_rounds} round{'s' if n_rounds > 1 else ''}; each round runs every group in a fresh process per side, "
                         f"{'peer first' if peer else 'ours only'}; rounds where other processes used "
                         f"> {args.max_foreign_cores} cores are discarded"])
    results = {g.name: [{} for _ in range(n_rounds)] for g in groups}
    workdir = tempfile.mkdtemp(prefix="same-run-")
    try:
        for r in range(n_rounds):
            for group in groups:
                for person in people:
                    if person.side == "peer" and group.no_peer:
                        continue
                    result = _run_process(person, module, group, workdir, args.process_timeout)
                    results[group.name][r][person.name] = result
                    _print_progress(r, n_rounds, group, person, result)
    finally:
        try:
            os.rmdir(workdir)
        except OSError:
            pass
    _print_versions(results, people)
    _print_load_table(results, groups, people, n_rounds, args.max_foreign_cores)
    _print_figures(results, groups, people, peer, n_rounds, args.max_foreign_cores)
    failed = sum("error" in rr.get(p.name, {}) for rounds_ in results.values() for rr in rounds_ for p in people)
    if failed:
        print(f"\n{failed} process(es) FAILED (their output is above); exit status 1")
        sys.stdout.flush()
        sys.exit(1)
    return results


def _print_progress(r: int, n_rounds: int, group: Group, person: Contestant, result: dict) -> None:
    head = f"  round {r + 1}/{n_rounds}  {group.name:<18s} {person.name:<14s}"
    if "error" in result:
        print(f"{head} FAILED: {result['error']}\n    " + result.get("stderr", "").strip().replace("\n", "\n    "))
    else:
        values = ", ".join(f"{f.short or f.label} {_fmt(result.get(f.key), f.fmt)}" for f in group.figures)
        notes = f"  [{result['note']}]" if result.get("note") else ""
        print(f"{head} {values}; foreign load {_fmt(_foreign(result), '.2f')} cores{notes}")
    sys.stdout.flush()


def _print_versions(results: dict, people: list[Contestant]) -> None:
    print("\nversions:")
    for person in people:
        for rounds_ in results.values():
            found = [rr[person.name] for rr in rounds_ if "error" not in rr.get(person.name, {"error": 1})]
            if found:
                versions = " ".join(f"{k} {v}" for k, v in found[0]["versions"].items())
                origins = ", ".join(f"{k} from {os.path.dirname(v)}" for k, v in found[0]["origins"].items())
                print(f"  {person.name:<14s} {versions}; {origins}")
                break


def _print_load_table(results, groups, people, n_rounds, limit) -> None:
    print(f"\nforeign CPU load per process, cores used by other processes while it measured "
          f"(* = over {limit}: round discarded for that row):")
    width = max(8, *(len(p.name) + 1 for p in people))
    spans = [max(len(g.name), len(people) * width) for g in groups]
    print("  " + " " * 6 + "".join(f" | {g.name:<{span}s}" for g, span in zip(groups, spans)))
    print("  round " + "".join(" | " + "".join(f"{p.name:>{width}s}" for p in people).rjust(span) for span in spans))
    for r in range(n_rounds):
        cells = []
        for g, span in zip(groups, spans):
            row = ""
            for p in people:
                if p.side == "peer" and g.no_peer:
                    row += f"{'-':>{width}s}"
                    continue
                load = _foreign(results[g.name][r].get(p.name))
                row += f"{'failed' if load is None else f'{load:.2f}' + ('*' if load > limit else ' '):>{width}s}"
            cells.append(row.rjust(span))
        print(f"  {r + 1:>5d} " + "".join(f" | {c}" for c in cells))


def _row(values_by_round, ratio_fn):
    """(median ours, median peer, ratios) over the given [(ours, peer)] pairs."""
    ours = [o for o, _ in values_by_round]
    peers = [p for _, p in values_by_round if p is not None]
    ratios = [ratio_fn(o, p) for o, p in values_by_round if p is not None]
    return (statistics.median(ours), statistics.median(peers) if peers else None, ratios)


def _print_figures(results, groups, people, peer, n_rounds, limit) -> None:
    ours_people = [p for p in people if p.side == "ours"]
    label_w = max(len(f.label) for g in groups for f in g.figures) + 2
    name_w = max(len(p.name) for p in ours_people) + 2
    if peer:
        print(f"\nsame-run figures, medians over the kept rounds; ratio = per-round ours vs {peer.name}, "
              f"> 1 means ours is better (median, min-max):")
        print(f"  {'figure':<{label_w}s} {'row':<{name_w}s} {'ours':>10s} {peer.name:>10s} "
              f"{'ratio':>7s} {'range':>13s}  rounds kept")
    else:
        print(f"\nour figures alone (peer not measured), medians over the kept rounds:")
        print(f"  {'figure':<{label_w}s} {'row':<{name_w}s} {'ours':>10s} {'range':>21s}  rounds kept")
    flagged, unmatched = [], []
    for group in groups:
        versus = None if group.no_peer else peer  # the peer of this group's rows, if it ran them
        if peer and group.no_peer:
            unmatched.append(f"{group.name}: {group.no_peer}")
        for figure in group.figures:
            for person in ours_people:
                pairs, loaded, failed = [], [], 0
                for r in range(n_rounds):
                    mine = results[group.name][r].get(person.name)
                    theirs = results[group.name][r].get(versus.name) if versus else None
                    o = mine.get(figure.key) if _foreign(mine) is not None else None
                    p = theirs.get(figure.key) if versus and _foreign(theirs) is not None else None
                    if o is None or (versus and not p):
                        failed += 1
                        continue
                    worst = max(_foreign(mine), _foreign(theirs) if versus else float("-inf"))
                    (loaded if worst > limit else pairs).append((o, p))
                why = ", ".join(x for x in (f"{len(loaded)} discarded" if loaded else "",
                                            f"{failed} failed" if failed else "") if x)
                kept = f"{len(pairs)}/{n_rounds}" + (f" ({why})" if why else "")
                if not pairs and loaded:
                    pairs, kept = loaded, kept + " !! DISTURBED"
                    flagged.append(f"{group.name}: {figure.label} ({person.name})")
                if not pairs:
                    print(f"  {figure.label:<{label_w}s} {person.name:<{name_w}s} no successful round")
                    continue
                ratio_fn = (lambda o, p: o / p) if figure.higher_is_better else (lambda o, p: p / o)
                ours_med, peer_med, ratios = _row(pairs, ratio_fn)
                if peer and not versus:
                    ours_values = [o for o, _ in pairs]
                    span = f"ours {_fmt(min(ours_values), figure.fmt)}-{_fmt(max(ours_values), figure.fmt)}"
                    print(f"  {figure.label:<{label_w}s} {person.name:<{name_w}s} {_fmt(ours_med, figure.fmt):>10s} "
                          f"{'n/a':>10s} {'n/a':>7s} {span:>13s}  {kept}")
                elif peer:
                    span = f"{min(ratios):.2f}-{max(ratios):.2f}"
                    print(f"  {figure.label:<{label_w}s} {person.name:<{name_w}s} {_fmt(ours_med, figure.fmt):>10s} "
                          f"{_fmt(peer_med, figure.fmt):>10s} {statistics.median(ratios):6.2f}x {span:>13s}  {kept}")
                else:
                    ours_values = [o for o, _ in pairs]
                    span = f"{_fmt(min(ours_values), figure.fmt)}-{_fmt(max(ours_values), figure.fmt)}"
                    print(f"  {figure.label:<{label_w}s} {person.name:<{name_w}s} {_fmt(ours_med, figure.fmt):>10s} "
                          f"{span:>21s}  {kept}")
    if unmatched:
        print(f"\nrows without {peer.name} (n/a: it cannot run them; ours alone, no ratio):")
        for line in unmatched:
            print(f"   {line}")
    if flagged:
        print(f"\n!! DISTURBED: every round of these rows had other processes using > {limit} cores; they are "
              f"reported from all rounds and are not measurements of an idle machine:")
        for line in flagged:
            print(f"   {line}")
    print("\nOnly same-run ratios are comparable across days and machines; quote them with the date and CPU above.")


if __name__ == "__main__":
    sys.path.append(str(BENCH_DIR))  # -I left the script's directory off sys.path; appended, it shadows nothing
    import same_run  # the module proper (not __main__), so roles and this runner share its globals

    same_run.role_main(sys.argv[1:])
