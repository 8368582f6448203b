"""The thread budget (issue 20): usable cores from affinity and cgroup quotas, the
``--threads`` > ``SEGAL_THREADS`` > automatic precedence, workers counted in the
budget, and applying it to torch (in a fresh process: it changes process state)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segal_core import SegalError
from segal_core.threads import (
    ENV_VAR,
    ThreadBudget,
    plan_threads,
    prepare_environment,
    usable_cpus,
)

REPO = Path(__file__).resolve().parents[1]


# -- usable_cpus ---------------------------------------------------------------------


@pytest.fixture
def affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight CPUs in this process's affinity."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _cpus(root: Path, proc_cgroup: str = "0::/\n") -> int:
    proc = root.parent / f"{root.name}-proc-cgroup"
    proc.write_text(proc_cgroup)
    return usable_cpus(root, proc_cgroup=proc)


@pytest.mark.usefixtures("affinity")
@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),  # quota below affinity wins
        ("150000 100000\n", 2),  # rounded up
        ("50000 100000\n", 1),  # under one core: at least 1
        ("1600000 100000\n", 8),  # quota above affinity: affinity wins
        ("max 100000\n", 8),  # no limit
        ("max\n", 8),
        ("\n", 8),  # malformed: no limit, no crash
        ("lots of cores\n", 8),
        ("200000 0\n", 8),
        ("-5 100000\n", 8),
        ("300000\n", 3),  # no period: the kernel's default, 100000
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int) -> None:
    root = _write(tmp_path / "cg", {"cpu.max": cpu_max})
    assert _cpus(root) == expected


@pytest.mark.usefixtures("affinity")
def test_cgroup_v2_own_and_parent_groups(tmp_path: Path) -> None:
    # the process's own cgroup allows 6 cores, its parent 3: the parent's limit applies
    root = _write(
        tmp_path / "cg",
        {"cpu.max": "max 100000", "jobs/cpu.max": "300000 100000", "jobs/me/cpu.max": "600000 100000"},
    )
    assert _cpus(root, "0::/jobs/me\n") == 3
    # a path that is not mounted below the root (a container's view): the root's file
    root = _write(tmp_path / "cg2", {"cpu.max": "400000 100000"})
    assert _cpus(root, "0::/docker/abc\n") == 4


@pytest.mark.usefixtures("affinity")
@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        ("300000", "100000", 3),
        ("250000", "100000", 3),
        ("2000000", "100000", 8),  # larger than the affinity
        ("-1", "100000", 8),  # -1: no limit
        ("abc", "100000", 8),
        ("100000", "", 8),
        ("100000", "0", 8),
    ],
)
def test_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, expected: int) -> None:
    root = _write(tmp_path / "cg", {"cpu/cpu.cfs_quota_us": quota, "cpu/cpu.cfs_period_us": period})
    assert _cpus(root, "2:cpuacct:/\n1:cpu:/\n0::/\n") == expected


@pytest.mark.usefixtures("affinity")
def test_cgroup_v1_combined_controller_folder(tmp_path: Path) -> None:
    root = _write(
        tmp_path / "cg",
        {"cpu,cpuacct/batch/cpu.cfs_quota_us": "200000", "cpu,cpuacct/batch/cpu.cfs_period_us": "100000"},
    )
    assert _cpus(root, "3:cpu,cpuacct:/batch\n") == 2


@pytest.mark.usefixtures("affinity")
def test_no_cgroup_files_and_unreadable_ones(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "absent", proc_cgroup=tmp_path / "absent-too") == 8
    root = tmp_path / "cg"
    (root / "cpu.max").mkdir(parents=True)  # a folder where a file should be: unreadable
    assert _cpus(root, "garbage without colons\n") == 8


def test_affinity_counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5}, raising=False)
    assert usable_cpus(tmp_path) == 2
    # where affinity is unknown: os.cpu_count()
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus(tmp_path) == 1


def test_real_machine() -> None:
    cpus = usable_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)


# -- plan_threads --------------------------------------------------------------------


def test_precedence_argument_env_auto() -> None:
    env = {ENV_VAR: "3", "OMP_NUM_THREADS": "5"}
    assert plan_threads(2, device_type="cpu", env=env, cpus=8) == ThreadBudget(2, 1, 0, "--threads")
    assert plan_threads(None, device_type="cpu", env=env, cpus=8) == ThreadBudget(3, 1, 0, "SEGAL_THREADS")
    assert plan_threads(None, device_type="cpu", env={"OMP_NUM_THREADS": "5"}, cpus=8) == ThreadBudget(
        5, 1, 0, "OMP_NUM_THREADS"
    )
    assert plan_threads(None, device_type="cpu", env={}, cpus=8) == ThreadBudget(8, 1, 0, "auto")
    # an empty SEGAL_THREADS counts as unset; a malformed OMP_NUM_THREADS is the runtime's business
    assert plan_threads(None, device_type="cpu", env={ENV_VAR: " ", "OMP_NUM_THREADS": "x"}, cpus=4).source == "auto"
    assert plan_threads(None, device_type="cpu", env={"OMP_NUM_THREADS": "6,2"}, cpus=4).intra_op == 6


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "2 threads"])
def test_bad_env_value(value: str) -> None:
    with pytest.raises(SegalError) as err:
        plan_threads(None, device_type="cpu", env={ENV_VAR: value}, cpus=4)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"SEGAL_THREADS={value!r}: ")


def test_bad_argument_and_env_ignored_when_argument_given() -> None:
    with pytest.raises(SegalError, match=r"^--threads 0: must be 1 or more$"):
        plan_threads(0, device_type="cpu", env={}, cpus=4)
    # --threads wins: a bad SEGAL_THREADS is not even read
    assert plan_threads(1, device_type="cpu", env={ENV_VAR: "abc"}, cpus=4).intra_op == 1


def test_workers_counted_in_budget() -> None:
    # CPU: no automatic workers, every thread computes
    assert plan_threads(None, device_type="cpu", env={}, cpus=2) == ThreadBudget(2, 1, 0, "auto")
    # explicit workers come out of the budget, leaving at least one compute thread
    budget = plan_threads(4, device_type="cpu", env={}, cpus=2, workers=1)
    assert (budget.intra_op, budget.loader_workers, budget.total) == (3, 1, 4)
    budget = plan_threads(2, device_type="cpu", env={}, cpus=8, workers=4)
    assert (budget.intra_op, budget.loader_workers) == (1, 4)
    # an accelerator: all but one thread load data, at most 8
    assert plan_threads(None, device_type="cuda", env={}, cpus=16) == ThreadBudget(8, 1, 8, "auto")
    assert plan_threads(None, device_type="cuda", env={}, cpus=4) == ThreadBudget(1, 1, 3, "auto")
    assert plan_threads(1, device_type="cuda", env={}, cpus=16) == ThreadBudget(1, 1, 0, "--threads")
    with pytest.raises(SegalError, match=r"^--num-workers -1: must be 0 or more$"):
        plan_threads(None, device_type="cpu", env={}, cpus=2, workers=-1)


def test_budget_is_frozen() -> None:
    budget = ThreadBudget(1, 1, 0)
    with pytest.raises(AttributeError):
        budget.intra_op = 2  # type: ignore[misc]


# -- prepare_environment / apply_threads ------------------------------------------------


def test_prepare_environment_keeps_the_users_choice() -> None:
    env: dict[str, str] = {}
    assert prepare_environment(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prepare_environment(env) == {}
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


_CHILD = """
import json, os, sys
import segal_core.threads as t
imported_torch = "torch" in sys.modules
prepared = t.prepare_environment()
loaded_before = t.torch_loaded()
first = t.apply_threads(t.ThreadBudget(intra_op=1, interop=1, loader_workers=0))
import torch
torch.ones(4) + 1
second = t.apply_threads(t.ThreadBudget(intra_op=2, interop=3, loader_workers=0))  # interop: once only
print(json.dumps({
    "imported_torch": imported_torch, "prepared": prepared, "loaded_before": loaded_before,
    "loaded_after": t.torch_loaded(), "first": [first.intra_op, first.interop],
    "second": [second.intra_op, second.interop], "torch": [torch.get_num_threads(), torch.get_num_interop_threads()],
    "parallel_info": torch.__config__.parallel_info(),
}))
"""


def test_apply_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", ENV_VAR)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["imported_torch"] is False  # importing the module does not import torch
    assert got["prepared"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert got["loaded_before"] is False and got["loaded_after"] is True
    assert got["first"] == [1, 1]
    assert got["second"] == [2, 1]  # the inter-op pool kept its first size, without an error
    assert got["torch"] == [2, 1]


def test_unresolved_auto_device_planned_like_the_cpu() -> None:
    assert plan_threads(None, device_type="auto", env={}, cpus=16) == ThreadBudget(16, 1, 0, "auto")


# -- benchmarks/concurrency.py -------------------------------------------------------


def _concurrency_module(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("concurrency")


def test_concurrency_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _concurrency_module(monkeypatch)
    modes = bench.build_modes(["default", "threads1", "old"], 4, wired=True, waits=True)
    assert [(m.args, m.env) for m in modes] == [
        ((), {}), (("--threads", "1"), {}), (("--threads", "4"), {"GOMP_SPINCOUNT": "300000"})
    ]

    def line(mode: str, repeat: int, count: int, wall: float, ok: bool = True) -> dict[str, object]:
        return {"mode": mode, "repeat": repeat, "runs_at_once": count, "wall_s": wall,
                "returncodes": [0 if ok else 1] * count, "timed_out": False}

    lines = [line("default", 0, 1, 10.0), line("default", 0, 2, 12.0), line("default", 1, 2, 15.0),
             line("default", 1, 1, 10.0), line("threads1", 0, 1, 10.0), line("threads1", 0, 2, 30.0, ok=False)]
    summary = bench.summarize(lines, modes)
    assert summary["default"]["ratio"] == 1.35 and summary["default"]["ratios"] == [1.2, 1.5]
    assert summary["default"]["meets_target"] is True
    assert summary["threads1"] == {"error": "no successful measurement"}


@pytest.mark.slow
def test_concurrency_quick(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", ENV_VAR)}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "concurrency.py"), "--quick", "--modes", "threads1",
         "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=900, check=True,
    )
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    header, *measurements, result = lines
    assert header["benchmark"] == "concurrency" and header["machine"] and "load_before" in header
    assert sorted(m["runs_at_once"] for m in measurements) == [1, 2]
    assert all(m["returncodes"] == [0] * m["runs_at_once"] for m in measurements)
    assert result["summary"]["threads1"]["ratio"] > 0
