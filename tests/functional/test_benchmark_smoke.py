"""Smoke test of the benchmark (tools/benchmark.py --quick): it runs and reports.

Correctness only: the benchmark itself checks that every restore is
byte-identical and exits non-zero otherwise. Timing is never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.functional import fixtures as fx

pytestmark = pytest.mark.functional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = ["full backup, zlib", "full backup, zstd", "full backup, none",
        "incremental 1 (1%)", "incremental 2 (1%)", "incremental 3 (1%)",
        "restore chain -> new volume", "restore chain -> existing vol",
        "sparse: full backup", "sparse: restore -> new volume"]


def run_quick(tmp_path, *extra: str) -> str:
    argv = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--quick",
            "--no-cinder", "--workdir", str(tmp_path), "--json", str(tmp_path / "raw.json"),
            *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, "benchmark failed (exit %d):\n%s\n%s" % (
        proc.returncode, proc.stdout[-5000:], proc.stderr[-5000:])
    # The temporary directory is gone: only the JSON file is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.json"]
    return proc.stdout


def table_row(out: str, label: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.startswith(label + " ")]
    assert lines, "no %r row in:\n%s" % (label, out)
    return lines[0][len(label):].split()


def test_quick_benchmark_of_the_engine(tmp_path):
    out = run_quick(tmp_path, "--skip-service")
    for label in ROWS:
        cells = table_row(out, label)
        assert float(cells[0]) > 0, cells            # engine MB/s
    check = [line for line in out.splitlines() if "every restore byte-identical" in line]
    assert check and check[0].split()[-2:] == ["yes", "met"], check
    assert "total benchmark time" in out


def test_quick_benchmark_through_the_service(tmp_path):
    fx.require_rabbitmq()
    fx.mariadb_connect().close()
    out = run_quick(tmp_path)
    for label in ROWS:
        cells = table_row(out, label)
        engine, service = cells[0], cells[-3]        # MB/s columns ("-" if not measured)
        assert engine != "-" and service != "-", cells
        assert float(engine) > 0 and float(service) > 0, cells
    # One extra engine/service pair (--quick) joins the run's pair in svc/eng only.
    extra = [m for m in json.loads((tmp_path / "raw.json").read_text())["measurements"]
             if m.get("pair_only")]
    assert {m["who"] for m in extra} == {"engine", "service"}, extra
    assert {m["op"] for m in extra} == set(ROWS)
    assert "median over 2 pairs" in out
