"""Temporaries name their owner; the sweep removes those of dead owners only (issue 18)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imagenet_clean.io import atomic_path, write_text
from imagenet_clean.leftovers import (
    host_tag,
    pid_alive,
    sweep_once,
    sweep_outputs,
    sweep_temporaries,
    temporary_name,
    temporary_owner,
)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_a_temporary_names_its_host_and_owner():
    name = temporary_name("fold1.safetensors")
    assert name.startswith(".fold1.safetensors.") and name.endswith(".tmp")
    assert temporary_owner(name) == (host_tag(), os.getpid())
    assert temporary_owner(temporary_name("x.json", pid=12)) == (host_tag(), 12)
    for other in (".fold1.safetensors.s4jtfbt0.tmp", "fold1.safetensors", ".x.tmp", ".x.abcdef-12-zz.tmp"):
        assert temporary_owner(other) is None


def test_atomic_path_writes_under_an_owned_name_and_leaves_nothing(tmp_path):
    with atomic_path(tmp_path / "a.json") as tmp:
        assert temporary_owner(tmp.name) == (host_tag(), os.getpid())
        tmp.write_text("{}")
    assert os.listdir(tmp_path) == ["a.json"]


def test_the_sweep_removes_only_dead_owners_temporaries_of_this_host(tmp_path, dead_pid):
    sub = tmp_path / "fold" / "deep"
    sub.mkdir(parents=True)
    dead = [tmp_path / temporary_name("a.parquet", pid=dead_pid), sub / temporary_name("b.json", pid=dead_pid)]
    alive = tmp_path / temporary_name("c.parquet")  # this process: running
    other_host = tmp_path / f".d.parquet.{'0' * 6 if host_tag() != '000000' else '111111'}-{dead_pid}-0123abcd.tmp"
    foreign = [tmp_path / ".e.parquet.s4jtfbt0.tmp", tmp_path / "user.tmp", tmp_path / "keep.parquet"]
    for p in [*dead, alive, other_host, *foreign]:
        p.write_text("x")
    assert sweep_temporaries(tmp_path, recursive=False) == [dead[0]]
    assert sweep_temporaries(tmp_path) == [dead[1]]
    assert all(p.exists() for p in [alive, other_host, *foreign])


def test_sweep_outputs_sweeps_the_folder_of_each_output_file(tmp_path, dead_pid):
    (tmp_path / "decisions").mkdir()
    left = tmp_path / "decisions" / temporary_name("val.parquet", pid=dead_pid)
    left.write_text("x")
    assert sweep_outputs([tmp_path / "decisions" / "val.parquet", tmp_path / "missing" / "x.json"]) == [left]


def test_a_write_killed_inside_atomic_path_is_swept_by_the_next_write(tmp_path):
    script = ("import os, signal, sys\nfrom imagenet_clean.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as t:\n    t.write_text('half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "m.json"
    assert subprocess.run([sys.executable, "-c", script, str(out)]).returncode == -9
    assert [temporary_owner(p.name) is not None for p in tmp_path.iterdir()] == [True]
    assert sweep_outputs([out]) and not list(tmp_path.iterdir())
    write_text(out, "{}")
    assert os.listdir(tmp_path) == ["m.json"]


KILLED_IN_WRITE_PREDICTIONS = """
import os, signal, sys
import numpy as np
import pyarrow.parquet as pq
from imagenet_clean.predictions import predictions_table, write_predictions

def die(*a, **k):
    open(a[1], "wb").write(b"half")  # the temporary exists, half written
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "kill":
    pq.write_table = die
write_predictions(sys.argv[1], predictions_table(["a", "b"], np.eye(2, 3)), model="tiny")
"""


def test_a_library_write_killed_inside_the_last_write_is_swept_by_the_rerun_without_the_cli(tmp_path):
    """Issue 28: the rerun of a killed ``write_predictions`` (no CLI, no stage sweep) leaves only the output."""
    out = tmp_path / "out" / "p.parquet"
    run = lambda how: subprocess.run([sys.executable, "-c", KILLED_IN_WRITE_PREDICTIONS, str(out), how])  # noqa: E731
    assert run("kill").returncode == -9
    left = os.listdir(out.parent)
    assert len(left) == 1 and temporary_owner(left[0]) is not None, left
    assert run("rerun").returncode == 0
    assert os.listdir(out.parent) == ["p.parquet"]


def test_atomic_writes_sweep_each_folder_once_per_process(tmp_path, dead_pid):
    first = tmp_path / temporary_name("a.json", pid=dead_pid)
    first.write_text("x")
    write_text(tmp_path / "a.json", "{}")
    assert not first.exists()  # the first write into the folder swept it
    second = tmp_path / temporary_name("b.json", pid=dead_pid)
    second.write_text("x")
    write_text(tmp_path / "b.json", "{}")
    assert second.exists()  # not swept again by this process: no scandir per file in a write loop
    assert sweep_once(tmp_path) == []
    script = f"from imagenet_clean.io import write_text\nwrite_text({str(tmp_path / 'c.json')!r}, '{{}}')\n"
    assert subprocess.run([sys.executable, "-c", script]).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json", "c.json"]  # a new process sweeps on its first write
