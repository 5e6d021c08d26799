"""Shared by the store tests measured with mutmut (docs/mutation-testing.md, "Measured:
benchmark/store.py"): one finished cell, copies of it, and processes of our own."""
import json
import shutil
import subprocess
import sys

import pytest

from benchmark.cells import run_cell
from benchmark.config import make_config

CELL = dict(task="digits", defense="median", attack="little", steps=2, eval_every=1,
            batch_size=8)


@pytest.fixture(scope="module")
def ran_cell(tmp_path_factory):
    """One finished cell, run once for the module; tests work on copies (`cell_copy`)."""
    root = tmp_path_factory.mktemp("one-cell")
    result = run_cell(make_config(**CELL), root)
    assert result.status == "ok"
    return result.folder


@pytest.fixture
def cell_copy(ran_cell, tmp_path):
    folder = tmp_path / "copy" / ran_cell.name
    shutil.copytree(ran_cell, folder)
    return folder


def run_json(folder):
    return json.loads((folder / "run.json").read_text())


def rewrite(folder, record):
    """run.json replaced by `record`, written as the store writes it (no new seal)."""
    (folder / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def alive_child():
    """A running process (a sleeping child, ended after the test). A process of our own,
    so that a mutant sending it a real signal hurts nothing else."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def alive_pid(alive_child):
    return alive_child.pid


def dead_pid():
    """The id of a process that has ended (a child, waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def written_folder(tmp_path, name, files):
    """A folder `name` under tmp_path holding `files` ({name: text})."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder
