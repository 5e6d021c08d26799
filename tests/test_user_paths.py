"""What a new user meets first (issue 20): the documented commands, `list`, the messages
of `study`, and the flag names."""
import re
from pathlib import Path

import pytest

from benchmark.cells import run_cell
from benchmark.cli import build_parser, main
from benchmark.cli.listing import _options, entries
from benchmark.config import make_config

REPO = Path(__file__).resolve().parent.parent


def _listing(capsys, what: str) -> list[str]:
    assert main(["list", what]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("what, columns", [("tasks", 3), ("profiles", 2), ("attacks", 5),
                                           ("defenses", 4)])
def test_list_has_one_column_per_header(capsys, what, columns):
    lines = _listing(capsys, what)
    rule = lines[1]  # tabulate's "----  ----" line under the headers
    assert set(rule) <= {"-", " "}
    assert len(rule.split()) == columns, rule  # no stray empty `--` column


@pytest.mark.parametrize("what", ["tasks", "profiles", "attacks", "defenses"])
def test_list_never_splits_a_word_or_an_option_across_lines(capsys, what):
    tokens = set(" ".join(_listing(capsys, what)).replace(",", " ").split())
    shown = {"tasks": ["description", "defaults"], "profiles": ["description"],
             "attacks": ["requirement", "options", "description", "reference"],
             "defenses": ["requirement", "options", "reference"]}[what]
    for row in entries(what):
        words = []
        for key in shown:
            value = row.get(key) or ""
            words += _options(value) if isinstance(value, dict) else value.split()
        words = " ".join(words).replace(",", " ").split()  # as the output's tokens
        missing = [word for word in words if word not in tokens]
        assert not missing, f"{row['name']}: split across lines: {missing}"


def test_list_tasks_shows_the_defaults_as_options(capsys):
    text = "\n".join(_listing(capsys, "tasks"))
    assert "steps=100" in text and "f_values=[2,4]" in text  # digits
    assert "lr_schedule=[(1500,0.001)]" in text               # cifar10


@pytest.fixture(scope="module")
def one_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = make_config(defense="median", attack="little", momentum_at="worker", steps=3,
                         eval_every=3, profile="test")
    assert run_cell(config, root).status == "ok"
    return root


def test_no_run_matches_names_the_filters_in_words(one_result, capsys):
    assert main(["study", str(one_result), "--defense", "krum", "--momentum", "update",
                 "--no-plots"]) == 2
    error = capsys.readouterr().err
    assert "{" not in error and "None" not in error  # not a Python dict
    assert "no run matches defense krum and momentum update among 1 run" in error
    assert "they have defense median; momentum worker" in error  # what is there instead
    assert "loosen the filters" in error


def test_no_run_matches_when_filters_clash(one_result, capsys):
    assert main(["study", str(one_result), "--defense", "median", "--attack", "little",
                 "--f", "4", "--no-plots"]) == 2
    error = capsys.readouterr().err
    assert "no run matches defense median and attack little and f 4" in error
    assert "they have f 2" in error


def _accepts(command: str, flag: str) -> bool:
    parser = build_parser()
    commands = next(action for action in parser._actions
                    if action.__class__.__name__ == "_SubParsersAction")
    return flag in commands.choices[command]._option_string_actions


@pytest.mark.skipif(not _accepts("cell", "--results"),
                    reason="cell.py does not take --results yet (issue 20: the diff is in the "
                           "report; benchmark/cli/cell.py belongs to another change)")
def test_cell_takes_results_like_every_other_command(tmp_path, capsys):
    common = ["cell", "--defense", "median", "--steps", "2", "--eval-every", "2"]
    assert main([*common, "--results", str(tmp_path / "new")]) == 0
    assert list((tmp_path / "new").rglob("run.json"))
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "old")]) == 0  # the deprecated alias
    assert list((tmp_path / "old").rglob("run.json"))
    error = capsys.readouterr().err
    assert "deprecated" in error and "--results" in error and len(error.splitlines()) == 1


def _code_blocks(path: Path) -> list[str]:
    """The shell blocks of a Markdown file, in order."""
    blocks, current, language = [], None, None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("bash", "sh", ""):
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_contributing_installs_the_test_extra_before_running_pytest():
    lines = [line.strip() for block in _code_blocks(REPO / "CONTRIBUTING.md")
             for line in block.splitlines()]
    first_pytest = next(i for i, line in enumerate(lines)
                        if re.search(r"(^|\s)(-m )?pytest\s", line) and "pip" not in line)
    installs = [line for line in lines[:first_pytest] if line.startswith("pip install")]
    assert any(".[test]" in line for line in installs), lines[:first_pytest]


def test_readme_tells_how_to_run_tests_without_tox():
    text = (REPO / "README.md").read_text()
    tests = text[text.index("## Tests"):]
    assert "pip install -e '.[test]'" in tests


def test_readme_keeps_its_two_first_commands_and_gives_the_cpu_build_of_torch():
    text = (REPO / "README.md").read_text()
    assert _code_blocks(REPO / "README.md")[0] == (
        "pip install -e . && python -m benchmark run --defense median\n"
        "pip install tox && tox\n")
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in text


def test_the_design_pointer_is_in_the_repository():
    text = (REPO / "README.md").read_text()
    assert "shared folder" not in text
    assert "docs/architecture.md" in text
    architecture = (REPO / "docs" / "architecture.md").read_text()
    for module in ("engine.py", "store.py", "behaviour.py", "registry.py", "executors.py",
                   "checkpoint.py", "statistics.py", "scores.py", "template.py"):
        assert module in architecture, module
