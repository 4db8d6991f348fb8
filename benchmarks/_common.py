"""Shared helpers of the benchmarks: a fresh database, the simulator in its own process, child
processes measured with ``wait4``, and the report formatting.

Everything that is measured runs in a process of its own, started by the benchmark: the
simulator (so that its CPU and memory are never counted), and each measured piece of work (so
that its peak RSS and CPU time come from the kernel's accounting of that process alone).

This module is also the simulator's entry point in its child process
(``python benchmarks/_common.py simulate SPEC.json --port P``); its module-level imports stay
light for that reason (no Dagster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without the install
    sys.path.insert(1, str(REPO_ROOT))

BENCH_DATABASE_URL_ENV = "TEMPLATE_PIPELINE_BENCH_DATABASE_URL"
DASHBOARD_DATABASE_URL_ENV = "DASHBOARD_DATABASE_URL"
LOOPBACK = "127.0.0.1"
# Variables of the developer's shell that would leak their own setup into the children.
_FOREIGN_ENV_PREFIXES = ("DAGSTER_", "TEMPLATE_", "DASHBOARD_", "ALERT_")

logger = logging.getLogger("benchmarks")


class BenchmarkError(RuntimeError):
    """A benchmark could not run (a child failed, a wait ran out of time)."""


# --------------------------------------------------------------------------------------------
# Database


def database_server_url(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """A PostgreSQL server to create the benchmark's databases on, and where it came from.

    ``TEMPLATE_PIPELINE_BENCH_DATABASE_URL``, else ``DASHBOARD_DATABASE_URL`` (only its server is
    used: the benchmark never writes into that database), else the embedded PostgreSQL.
    """
    env = os.environ if environ is None else environ
    for name in (BENCH_DATABASE_URL_ENV, DASHBOARD_DATABASE_URL_ENV):
        url = env.get(name, "").strip()
        if url:
            return url, name
    from template_pipeline.store import embedded

    return embedded.start_embedded_postgres(database="postgres"), "embedded PostgreSQL (.local/)"


@contextlib.contextmanager
def fresh_database(
    server_url: str, label: str, *, keep: bool = False, dashboard: bool = True
) -> Iterator[str]:
    """A new database on ``server_url`` for one benchmark run (dropped afterwards).

    A ``dashboard`` database gets this release's schema (``template-pipeline migrate``), as in
    production before any sync; otherwise (a Dagster instance's) it is left empty.
    """
    from template_pipeline.store import db, migrate

    name = f"tp_bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    db.ensure_database(server_url, name)
    url = db.sqlalchemy_url(db.with_database(server_url, name)).render_as_string(
        hide_password=False
    )
    if dashboard:
        migrate.upgrade(url)
    try:
        yield url
    finally:
        db.get_engine.cache_clear()
        if keep:
            logger.warning("kept database %s", name)
        else:
            db.drop_database(server_url, name)


def server_version(url: str) -> str:
    from template_pipeline.store import db

    with db.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# --------------------------------------------------------------------------------------------
# Child processes


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this one without the developer's pipeline settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    # The children import the package from this checkout even without an install.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


@dataclass
class Measured:
    """A finished child: its own wall time, CPU time and peak RSS, and the report it wrote."""

    name: str
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    report: dict[str, Any]
    log_path: Path

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def log_tail(self, limit: int = 4000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return text if len(text) <= limit else "...\n" + text[-limit:]


def run_measured(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    workdir: Path,
    timeout: float,
) -> Measured:
    """Run ``args``, wait for it with ``wait4`` and return what the kernel measured.

    The child is handed ``--report PATH`` and writes its JSON report there; its output goes to a
    log file in ``workdir`` (a pipe could fill up and block it). ``ru_maxrss`` is the peak RSS of
    that process (and of any descendant it waited for), never of this one or of the simulator.
    """
    report_path = workdir / f"{name}.report.json"
    log_path = workdir / f"{name}.log"
    report_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [*args, "--report", str(report_path)],
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = started + timeout
    try:
        while True:
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                raise BenchmarkError(f"{name} did not finish within {timeout:.0f} s")
            time.sleep(0.02)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(popen.pid, 0)
        raise
    wall = time.perf_counter() - started
    popen.returncode = os.waitstatus_to_exitcode(status)
    report: dict[str, Any] = {}
    if report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
    measured = Measured(
        name=name,
        returncode=popen.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        report=report,
        log_path=log_path,
    )
    if measured.returncode != 0 or not report:
        raise BenchmarkError(
            f"{name} failed (exit code {measured.returncode}); its output:\n{measured.log_tail()}"
        )
    return measured


def write_report(path: str | os.PathLike[str], report: Mapping[str, Any]) -> None:
    """What a child hands back to the benchmark (written last: its presence means success)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(report, default=str), encoding="utf-8")
    tmp.replace(path)


def peak_rss_mb() -> float:
    """This process's peak RSS so far (``VmHWM``), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


# --------------------------------------------------------------------------------------------
# The simulator, in its own process


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class SimulatedSite:
    """One site as the simulator child builds it (the keyword arguments of ``SimSite``)."""

    key: str
    api_key: str
    options: dict[str, Any] = field(default_factory=dict)

    def as_spec(self) -> dict[str, Any]:
        return {"key": self.key, "api_key": self.api_key, **self.options}


class SimulatorProcess:
    """``template_pipeline.apps.simulator.serve`` in a child process, on a free loopback port.

    The child generates the sites' data before it binds the port, so an open port means ready.
    """

    def __init__(
        self, sites: Sequence[SimulatedSite], workdir: Path, *, start_timeout: float = 300.0
    ) -> None:
        if not sites:
            raise ValueError("the simulator needs at least one site")
        self.sites = list(sites)
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.port = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_path = workdir / "simulator.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def base_url(self, key: str) -> str:
        return f"{self.url}/t/{key}/"

    def fault_counts(self) -> dict[str, dict[str, Any]]:
        """The simulator's ``GET /_simulator/faults``: requests and faults injected, per site."""
        from urllib.request import urlopen

        with urlopen(f"{self.url}/_simulator/faults", timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def __enter__(self) -> SimulatorProcess:
        spec = self.workdir / "simulator-sites.json"
        spec.write_text(json.dumps([s.as_spec() for s in self.sites]), encoding="utf-8")
        self.port = free_port()
        with self._log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__)),
                    "simulate",
                    str(spec),
                    "--port",
                    str(self.port),
                ],
                env=child_env(),
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,  # commands (see churn)
                stdout=subprocess.PIPE,  # their answers
                stderr=log,
                start_new_session=True,
                text=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while not _port_open(self.port):
            if self._popen.poll() is not None:
                output = self._log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise BenchmarkError(f"the simulator exited at start; its output:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchmarkError(f"the simulator did not start in {self.start_timeout:.0f} s")
            time.sleep(0.1)
        return self

    def churn(
        self, key: str, *, changed: float, deleted: float, added: float, seed: int = 0
    ) -> dict[str, dict[str, int]]:
        """Change, delete and add shares of site ``key``'s records in the running simulator
        (``apps.simulator.churn``); the counts per table. Same port, same base URL."""
        popen = self._popen
        if popen is None or popen.stdin is None or popen.stdout is None:
            raise BenchmarkError("the simulator is not running")
        command = {"site": key, "changed": changed, "deleted": deleted, "added": added}
        popen.stdin.write(json.dumps({"churn": {**command, "seed": seed}}) + "\n")
        popen.stdin.flush()
        answer = popen.stdout.readline()
        if not answer:
            raise BenchmarkError("the simulator exited instead of answering")
        reply = json.loads(answer)
        if "error" in reply:
            raise BenchmarkError(f"the simulator could not churn site {key!r}: {reply['error']}")
        return reply["churned"]

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None:
            return
        with contextlib.suppress(OSError):
            if popen.stdin is not None:
                popen.stdin.close()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_sites(
    path: Path,
    simulator: SimulatorProcess,
    *,
    refused: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """A sites file for the simulator's sites; returns the key variables to set.

    Sites in ``refused`` get a wrong key in their variable: the simulator answers 401.
    """
    from template_pipeline.apps.simulator import api_key_env_name
    from template_pipeline.domain.sites import write_sites_file

    entries = []
    env: dict[str, str] = {}
    for site in simulator.sites:
        variable = api_key_env_name(site.key)
        entries.append(
            {"key": site.key, "base_url": simulator.base_url(site.key), "api_key_env": variable}
        )
        env[variable] = "not-the-key" if site.key in refused else site.api_key
    write_sites_file(path, entries)
    return env


# --------------------------------------------------------------------------------------------
# The work of a site's run, without Dagster (the references)


def endpoint_batches(spec: Any, client: Any, *, validate: bool = True) -> Iterator[Any]:
    """An endpoint's pages as the assets produce them (``assets._batches``, public APIs only).

    With ``validate=False`` the pages are fetched and counted, not validated: the batches carry
    no row, only ``fetched``.
    """
    from template_pipeline.domain.batches import ValidatedBatch
    from template_pipeline.domain.validation import validate_records, validate_stats

    if spec.kind == "list":
        # The assets prefetch the next page while this one is validated and written.
        pages = (
            client.iter_pages_prefetched(spec.endpoint)
            if validate
            else client.iter_pages(spec.endpoint)
        )
        for page in pages:
            if validate:
                yield validate_records(spec.name, page, base_url=client.base_url)
            else:
                yield ValidatedBatch(rows=[], fetched=len(page))
    elif spec.kind == "settings":
        settings = client.fetch_settings()
        yield (
            validate_records("settings", settings)
            if validate
            else ValidatedBatch(rows=[], fetched=len(settings))
        )
    else:
        stats = client.fetch_stats()
        rows = [validate_stats(stats)] if validate else []
        yield ValidatedBatch(rows=rows, fetched=1)


def sync_without_dagster(site: str, database_url: str, run_id: str) -> dict[str, int]:
    """What one site's sync run does, minus Dagster: every endpoint fetched, validated and
    written by the IO manager's ``write_snapshot``, then the order items rebuilt from the stored
    orders. Returns the rows written (valid rows) per entity."""
    from template_pipeline.defs.resources import TemplateClientResource
    from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
    from template_pipeline.domain.entities import FETCHED as ENDPOINT_SPECS
    from template_pipeline.domain.validation import explode_order_items
    from template_pipeline.store.reads import read_live_rows
    from template_pipeline.store.writer import write_snapshot

    resource = TemplateClientResource()
    written: dict[str, int] = {}
    quiet = logging.getLogger("benchmarks.quiet")
    quiet.setLevel(logging.ERROR)
    for spec in ENDPOINT_SPECS:
        with resource.get_client(site) as client:
            snapshot = EntitySnapshot(
                site, spec.name, endpoint_batches(spec, client), source=client.base_url
            )
            written[spec.name] = write_snapshot(
                database_url, snapshot, run_id=run_id, log=quiet
            ).valid
    orders = read_live_rows(database_url, "orders", site, ["template_id", "items"])
    rows = explode_order_items(zip(orders["template_id"], orders["items"], strict=True))
    batch = ValidatedBatch(rows=rows, fetched=len(rows))
    written["order_items"] = write_snapshot(
        database_url, EntitySnapshot(site, "order_items", [batch]), run_id=run_id, log=quiet
    ).valid
    return written


# --------------------------------------------------------------------------------------------
# Reporting


def machine_description(database_url: str | None = None) -> str:
    """One line naming the machine, for the figures to be read against."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " ".join(line.split(":", 1)[1].split())
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    parts = [
        f"{os.cpu_count()} cores ({model}){memory}{load}",
        f"Python {platform.python_version()}",
    ]
    if database_url:
        with contextlib.suppress(Exception):
            parts.append(f"PostgreSQL {server_version(database_url)}")
    return "; ".join(parts)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def fmt_rate(value: float) -> str:
    if value != value or value == float("inf"):
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.0f}k/s"
    return f"{value:,.0f}/s"


def fmt_s(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(row) for row in cells[1:]]
    )


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def workdir(label: str, keep: bool) -> contextlib.AbstractContextManager[str]:
    """A scratch folder for logs, reports and sites files (kept on request)."""
    if keep:
        path = tempfile.mkdtemp(prefix=f"tp-bench-{label}-")
        return contextlib.nullcontext(path)
    return tempfile.TemporaryDirectory(prefix=f"tp-bench-{label}-")


def interrupt_on_signals() -> None:
    """SIGTERM (and Ctrl-C) raise ``KeyboardInterrupt``, so that every ``finally`` runs.

    Python's default SIGTERM ends the process on the spot, which would leave the simulator, a
    daemon and its run workers behind, and the benchmark's databases undropped.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_and_report(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    report: Callable[[dict[str, Any]], tuple[str, bool]],
    label: str = "benchmark",
) -> tuple[dict[str, Any], bool]:
    """What every benchmark's ``main`` does: run it with its signals turned into
    ``KeyboardInterrupt`` (so every cleanup runs), print its report and wall time, and write
    its figures to ``--json``. Returns the figures and whether the report's checks held."""
    setup_logging(args.verbose)
    interrupt_on_signals()
    started = time.perf_counter()
    figures = run(args)
    text, held = report(figures)
    print(text)
    print(f"\n{label} wall time: {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return figures, held


def progress(message: str) -> None:
    """A progress line on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The simulator child


def sim_site(spec: Mapping[str, Any]) -> Any:
    """The ``SimSite`` of a spec (``SimulatedSite.as_spec``); ``faults`` is a ``Faults`` dict."""
    from template_pipeline.apps.simulator import Faults, SimSite

    options = dict(spec)
    if isinstance(options.get("faults"), Mapping):
        options["faults"] = Faults(**options["faults"])
    return SimSite(**options)


def _simulate_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="_common.py simulate")
    parser.add_argument("spec", type=Path, help="JSON list of SimSite keyword arguments")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from template_pipeline.apps.simulator.server import SimulatorServer

    sites = [sim_site(entry) for entry in json.loads(args.spec.read_text(encoding="utf-8"))]
    logging.basicConfig(level=logging.WARNING)
    with SimulatorServer(sites, host=LOOPBACK, port=args.port, log_level="warning") as server:
        # Commands from the benchmark, one JSON object a line on stdin; one answer a line on
        # stdout. The end of stdin (the benchmark went away) stops the simulator.
        for line in sys.stdin:
            print(json.dumps(_simulator_command(server, json.loads(line))), flush=True)
    return 0


def _simulator_command(server: Any, command: Mapping[str, Any]) -> dict[str, Any]:
    """``{"churn": {"site": KEY, "changed": 0.1, "deleted": 0.05, "added": 0.05}}``."""
    from dataclasses import asdict

    from template_pipeline.apps.simulator.churn import churn

    try:
        options = dict(command["churn"])
        counts = churn(server.data(options.pop("site")), **options)
    except Exception as exc:  # answered, so the benchmark reports it instead of hanging
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"churned": {entity: asdict(count) for entity, count in counts.items()}}


# --------------------------------------------------------------------------------------------
# A process tree, measured whole


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), from ``/proc``."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                with contextlib.suppress(OSError):
                    for child in (task / "children").read_text().split():
                        found.append(int(child))
                        pending.append(int(child))
    return found


def _reap_main(argv: Sequence[str]) -> int:
    """Run ``argv`` as a child subreaper, and exit only once every descendant has exited.

    Processes of the tree that outlive their parent (a code server's run worker, a log tail)
    are re-parented here instead of to init, so that whoever waits for this process gets, in
    its ``wait4`` accounting, the CPU time of the whole tree and nothing else. SIGTERM or
    SIGINT is passed to ``argv``; descendants still alive ``grace`` seconds after it exited (or
    after the signal) are killed.
    """
    import ctypes

    grace = float(os.environ.get("BENCH_REAP_GRACE_S", "20"))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Handlers, not SIG_IGN: an ignored signal would stay ignored in the exec'd child.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
    exit_code: int | None = None
    deadline: float | None = None
    signalled = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left to wait for
        if pid == child.pid:
            exit_code = os.waitstatus_to_exitcode(status)
        if pid:
            continue
        now = time.monotonic()
        if stop_requested and not signalled:
            signalled = True
            if exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        if deadline is None and (signalled or exit_code is not None):
            deadline = now + grace
        if deadline is not None and now > deadline:
            for pid in descendants(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return exit_code if exit_code is not None else 1


def reaped_command(argv: Sequence[str]) -> list[str]:
    """``argv`` run under :func:`_reap_main` (see there)."""
    return [sys.executable, str(Path(__file__).resolve()), "reap", "--", *argv]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "simulate":
        sys.exit(_simulate_main(sys.argv[2:]))
    if len(sys.argv) > 2 and sys.argv[1] == "reap" and sys.argv[2] == "--":
        sys.exit(_reap_main(sys.argv[3:]))
    sys.exit(
        "usage: python benchmarks/_common.py simulate SPEC.json --port PORT\n"
        "       python benchmarks/_common.py reap -- COMMAND..."
    )
