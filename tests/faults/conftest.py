"""Fixtures of the fault suite, and its summary line: faults injected, faults survived, files lost.

Every test in ``tests/faults`` injects one fault (its parameters name it); the tests listed in
``reused.REUSED`` inject faults elsewhere in the suite and are counted too when they run. A test
guards the files that must come through its fault with the ``survivors`` fixture: a guarded file
that is missing or changed afterwards is a file lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .reused import REUSED

FAULTS_DIR = "tests/faults/"
LEDGER = pytest.StashKey[dict[str, tuple[int, int]]]()  # node id -> (files guarded, files lost)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_below(*roots: Path) -> list[Path]:
    """Every regular file below the roots (or the roots themselves when they are files)."""
    found = []
    for root in roots:
        found += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return found


@dataclass
class Survivors:
    """Files that must come through a fault unchanged (or equal to a reference file)."""

    expected: dict[Path, str] = field(default_factory=dict)
    checked: list[Path] | None = None

    def guard(self, *roots: Path) -> list[Path]:
        """Remember the files below ``roots`` as they are now; returns them."""
        files = files_below(*roots)
        assert files, f"nothing to guard below {roots}"
        self.expected.update({path: digest(path) for path in files})
        return files

    def expect(self, path: Path, like: Path) -> None:
        """``path`` must end up byte-identical to the reference file ``like``."""
        self.expected[path] = digest(like)

    def lost(self) -> list[Path]:
        """The guarded files now missing or changed (recorded for the summary)."""
        self.checked = [path for path, value in self.expected.items() if not path.is_file() or digest(path) != value]
        return self.checked


@pytest.fixture
def survivors(request) -> Survivors:
    guard = Survivors()
    yield guard
    lost = guard.checked if guard.checked is not None else guard.lost()
    request.config.stash.setdefault(LEDGER, {})[request.node.nodeid] = (len(guard.expected), len(lost))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files or folders of atomic writes (``.<name>.*.tmp``) below ``folder``."""
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []


@pytest.fixture
def tmpfs(tmp_path):
    """A function mounting a tmpfs of a given size on a new folder (unmounted at teardown); skips without root."""
    mounted: list[Path] = []

    def mount(size_bytes: int, name: str = "small-disk") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(folder)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root needed): {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def resize_tmpfs(folder: Path, size_bytes: int) -> None:
    """Grow a mounted tmpfs in place (its files are kept): space freed, as an operator would."""
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(folder)], check=True)


def truncate_member(zip_path: Path, member_name: str) -> None:
    """Rewrite a zip with one member cut to half its length: a valid zip holding a broken NetCDF file."""
    with zipfile.ZipFile(zip_path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(zip_path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data[: len(data) // 2] if info.filename.endswith(member_name) else data)


def copy_product(product: Path, folder: Path) -> Path:
    """A writable copy of a product folder, to be damaged."""
    return Path(shutil.copytree(product, folder / product.name))


# ---------------------------------------------------------------- processes

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cloud_tasks"]


def start_cli(*argv: str | Path) -> subprocess.Popen:
    """``python -m cloud_tasks ARGV`` as a child process (stderr kept for the test to read)."""
    return subprocess.Popen(
        [*CLI, *map(str, argv)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def run_cli_process(*argv: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, argv)], cwd=REPO, capture_output=True, text=True, timeout=300)


def writing(folder: Path) -> bool:
    """Whether some temporary output below ``folder`` holds data yet (a writer is mid-write)."""
    with contextlib.suppress(FileNotFoundError):  # a temporary may be renamed or removed while we look
        for path in leftovers(folder):
            files = [path] if path.is_file() else list(path.rglob("*"))
            if any(p.is_file() and p.stat().st_size for p in files):
                return True
    return False


def wait_until_writing(process: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not writing(folder):
        assert process.poll() is None, f"the process ended before it was caught writing: {process.stderr.read()}"
        assert time.monotonic() < deadline, "the process never started writing"
        time.sleep(0.001)


@contextlib.contextmanager
def reaped(*processes: subprocess.Popen):
    """Never leave a child behind (stopped or not) when a test fails."""
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


# ---------------------------------------------------------------- the summary line


def _outcomes(stats: dict) -> dict[str, str]:
    """Node id -> 'passed', 'failed' or 'skipped', over all test phases."""
    outcome: dict[str, str] = {}
    for reports in stats.values():
        for report in reports:
            if getattr(report, "when", None) not in ("setup", "call", "teardown"):
                continue
            if report.failed:
                outcome[report.nodeid] = "failed"
            elif report.skipped and outcome.get(report.nodeid) != "failed":
                outcome[report.nodeid] = "skipped"
            elif report.when == "call" and report.passed:
                outcome.setdefault(report.nodeid, "passed")
    return outcome


def pytest_terminal_summary(terminalreporter, config):
    outcomes = _outcomes(terminalreporter.stats)
    faults = {node: state for node, state in outcomes.items() if node.startswith(FAULTS_DIR) or node in REUSED}
    if not faults:
        return
    injected = {node: state for node, state in faults.items() if state != "skipped"}
    survived = sum(state == "passed" for state in injected.values())
    ledger = config.stash.get(LEDGER, {})
    guarded = sum(g for g, _ in ledger.values())
    lost = sum(n for _, n in ledger.values())
    not_run = sorted(set(REUSED) - set(outcomes))
    reused = sum(node in REUSED for node in injected)
    terminalreporter.section("fault suite")
    for node, state in sorted(injected.items()):
        if state != "passed":
            terminalreporter.write_line(f"NOT SURVIVED: {node}")
    skipped = len(faults) - len(injected)
    terminalreporter.write_line(
        f"faults injected: {len(injected)} ({len(injected) - reused} in {FAULTS_DIR}, {reused} elsewhere), "
        f"survived: {survived}, files lost: {lost} of {guarded} guarded"
        + (f"; {skipped} skipped" if skipped else "")
        + (f"; {len(not_run)} catalogued faults of other test files not run in this session" if not_run else "")
    )
