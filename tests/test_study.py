"""`study` on a small stored set: digits, 2 seeds, 2 defenses, update and worker momentum,
attack none and little (16 runs of 6 steps, made once per session)."""
import itertools
import shutil

import matplotlib.image
import pandas as pd
import pytest

from benchmark import study
from benchmark.api import UsageError
from benchmark.cells import run_cell
from benchmark.cli import main
from benchmark.config import make_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFENSES, ATTACKS, PLACEMENTS, SEEDS = ("average", "median"), ("none", "little"), \
    ("update", "worker"), (1, 2)
EXPECTED_FIGURES = sorted(
    [f"accuracy_digits_{a}_{p}_f2.png" for a in ATTACKS for p in PLACEMENTS]
    + [f"ratio_digits_{a}_f2.png" for a in ATTACKS] + ["momentum_digits_f2.png"])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for defense, attack, placement, seed in itertools.product(DEFENSES, ATTACKS, PLACEMENTS,
                                                              SEEDS):
        config = make_config(defense=defense, attack=attack, momentum_at=placement, seed=seed,
                             steps=6, eval_every=3, profile="test")
        assert run_cell(config, root).status == "ok"
    return root


def test_study_command_prints_tables_and_writes_valid_pngs(results, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", str(results), "--out", str(out), "--reach", "0.2", "0.99"]) == 0
    text = capsys.readouterr().out
    assert "16 runs" in text
    for title in ("Runs grouped over seeds", "variance-norm condition held",
                  "Max test accuracy"):
        assert title in text
    assert "steps to 20% (seeds)" in text and "steps to 99% (seeds)" in text
    assert "never" in text  # nobody reaches 99 % in 6 steps
    pngs = sorted(path.name for path in out.glob("*.png"))
    assert pngs == EXPECTED_FIGURES
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert image.std() > 0.01  # not a blank canvas
    for name in ("summary", "condition", "momentum"):
        assert not pd.read_csv(out / f"{name}.csv").empty


def test_python_api_tables_group_over_seeds(results):
    result = study.run(results)  # no output folder: tables only
    assert result.figures == []
    summary = result.tables["summary"]
    assert len(summary) == len(DEFENSES) * len(ATTACKS) * len(PLACEMENTS)
    assert (summary["seeds"] == 2).all() and (summary["ok"] == 2).all()
    runs = result.runs
    one = runs[(runs["defense"] == "median") & (runs["attack"] == "little")
               & (runs["momentum_at"] == "worker")]
    row = summary[(summary["defense"] == "median") & (summary["attack"] == "little")
                  & (summary["momentum_at"] == "worker")].iloc[0]
    assert row["max_accuracy_mean"] == pytest.approx(one["summary_max_accuracy"].mean())
    assert row["max_accuracy_std"] == pytest.approx(one["summary_max_accuracy"].std())
    assert row["condition_share_mean"] == pytest.approx(one["summary_condition_share"].mean())

    condition = result.tables["condition"]  # average has no bound: no row
    assert set(condition["defense"]) == {"median"}
    assert {"condition_share_update_mean", "condition_share_worker_mean"} <= set(condition)

    momentum = result.tables["momentum"]
    reference = runs[(runs["defense"] == "average") & (runs["attack"] == "none")]
    for placement in PLACEMENTS:
        expected = reference.loc[reference["momentum_at"] == placement,
                                 "summary_max_accuracy"].mean()
        assert momentum[f"reference_{placement}"].tolist() == pytest.approx([expected] * 4)
    assert momentum["worker_gain"].tolist() == pytest.approx(
        (momentum["max_accuracy_worker_mean"] - momentum["max_accuracy_update_mean"]).tolist())


def test_filters_and_figure_names_are_deterministic(results, tmp_path):
    first = study.run(results, tmp_path / "a", attack=["little"], defense=["median"])
    second = study.run(results, tmp_path / "b", attack=["little"], defense=["median"])
    assert set(first.runs["attack"]) == {"little"} and len(first.runs) == 4
    names = [path.name for path in first.figures]
    assert names == [path.name for path in second.figures]
    assert names == ["accuracy_digits_little_update_f2.png",
                     "accuracy_digits_little_worker_f2.png", "momentum_digits_f2.png",
                     "ratio_digits_little_f2.png"]
    for a, b in zip(first.figures, second.figures):
        assert a.read_bytes() == b.read_bytes()  # same data, same bytes


def test_curves_carry_group_keys_and_seeds(results):
    runs = study.load(results, defense=["median"], momentum_at=["worker"])
    curves = study.eval_curves(runs)
    assert set(curves["seed"]) == set(SEEDS)
    assert sorted(curves["step"].unique()) == [0, 3, 6]
    steps = study.step_curves(runs, ["honest_ratio", "bound_squared"])
    assert len(steps) == len(runs) * 6
    # median's bound² is 1/(n - f) over the rows it sees: all 11 (f = 2), with or without
    # an attack (with none, every worker is honest)
    bounds = steps.groupby("attack")["bound_squared"].unique()
    assert list(bounds["little"]) == pytest.approx([1 / 9])
    assert list(bounds["none"]) == pytest.approx([1 / 9])


def test_bad_input_names_the_fix(tmp_path, results, capsys):
    with pytest.raises(UsageError, match="no complete result folder"):
        study.load(tmp_path)
    with pytest.raises(UsageError, match="no run matches"):
        study.load(results, defense=["krum"])
    assert main(["study", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["study", str(results), "--reach", "80"]) == 2
    assert "fractions" in capsys.readouterr().err


def test_committed_results_without_metrics_csv_are_read_from_the_trace(results, tmp_path):
    copy = tmp_path / "committed"
    shutil.copytree(results, copy)
    for path in copy.rglob("metrics.csv"):
        path.unlink()  # metrics.csv is not committed; trace.csv.gz is
    runs = study.load(copy, defense=["median"], attack=["little"])
    assert len(runs) == 4
    steps = study.step_curves(runs, ["honest_ratio", "bound_squared"])
    assert len(steps) == 4 * 6 and steps["honest_ratio"].gt(0).all()


def _cell(root, **settings):
    """The folder of one stored run of the fixture."""
    runs = study.load(root)
    for key, value in settings.items():
        runs = runs[runs[key] == value]
    return runs["path"].iloc[0]


def test_one_cell_folder_prints_tables_and_draws_its_figures(results, tmp_path, capsys):
    # issue 20: a group with one momentum placement crashed seaborn's pointplot (dodge / 0)
    folder = _cell(results, defense="median", attack="little", momentum_at="worker", seed=1)
    out = tmp_path / "one"
    assert main(["study", folder, "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "1 runs" in text and "Runs grouped over seeds" in text and "Max test accuracy" in text
    assert sorted(path.name for path in out.glob("*.png")) == [
        "accuracy_digits_little_worker_f2.png", "momentum_digits_f2.png",
        "ratio_digits_little_f2.png"]


def test_a_filter_leaving_one_placement_works(results, tmp_path, capsys):
    out = tmp_path / "worker"
    assert main(["study", str(results), "--defense", "median", "--momentum", "worker",
                 "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "4 runs" in text and "max acc % worker" in text
    assert (out / "momentum_digits_f2.png").read_bytes().startswith(PNG_SIGNATURE)


def test_tables_are_printed_and_written_before_any_figure_is_drawn(results, tmp_path, capsys,
                                                                   monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(study.plots, "render", broken)
    out = tmp_path / "study"
    with pytest.raises(RuntimeError, match="drawing failed"):
        main(["study", str(results), "--out", str(out), "--jobs", "1"])
    text = capsys.readouterr().out
    assert "Runs grouped over seeds" in text and "Max test accuracy" in text
    assert text.index("Max test accuracy") < text.index(f"drawing {len(EXPECTED_FIGURES)} figures")
    for name in ("summary", "condition", "momentum"):
        assert (out / f"{name}.csv").exists()


def test_figures_drawn_in_several_processes_are_the_same_files(results, tmp_path):
    serial = study.run(results, tmp_path / "one", attack=["little"], jobs=1)
    parallel = study.run(results, tmp_path / "two", attack=["little"], jobs=2)
    assert [p.name for p in serial.figures] == [p.name for p in parallel.figures]
    assert len(serial.figures) == 4
    for a, b in zip(serial.figures, parallel.figures):
        assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("log", [False, True])
def test_mean_sd_lines_draw_what_seaborn_lineplot_draws(log, tmp_path):
    """plots._mean_sd_lines aggregates in one groupby what sns.lineplot(errorbar="sd")
    aggregates step by step: the figures must be the same pixels."""
    import numpy as np
    import seaborn as sns

    from benchmark.study import plots

    rng = np.random.default_rng(0)
    rows = [{"hue": hue, "style": style, "step": step, "seed": seed,
             "value": float(np.exp(rng.normal())) if log else float(rng.normal())}
            for hue in ("update", "worker") for style in ("honest", "sampled")
            for step in range(0, 40, 2) for seed in (1, 2, 3)
            if not (hue == "worker" and step == 38 and seed > 1)]  # a single value: no band
    data = pd.DataFrame(rows)
    palette = dict(zip(["update", "worker"], sns.color_palette("colorblind", 2)))
    paths = []
    for how in ("seaborn", "ours"):
        figure, (axis,) = plots._figure(1, 5.0, 4.0)
        if log:
            axis.set_yscale("log")
        axis.set(xlabel="step", ylabel="value")
        if how == "seaborn":
            sns.lineplot(data=data, x="step", y="value", hue="hue", hue_order=list(palette),
                         palette=palette, style="style", style_order=["honest", "sampled"],
                         errorbar="sd", ax=axis)
        else:
            plots._mean_sd_lines(axis, data, "step", "value", "hue", list(palette), palette,
                                 style="style", style_order=["honest", "sampled"], log=log)
        paths.append(plots._save(figure, tmp_path, how))
    seaborn_image, our_image = (matplotlib.image.imread(path) for path in paths)
    assert seaborn_image.shape == our_image.shape
    assert abs(seaborn_image - our_image).max() == 0


def test_a_failed_run_without_metrics_is_studied(tmp_path):
    # a failed cell leaves an empty metrics.csv (and no trace): `study` read it and crashed
    root = tmp_path / "results"
    for attack in ("none", "inf"):
        config = make_config(defense="average", attack=attack, steps=6, eval_every=3,
                             profile="test")
        run_cell(config, root)
    result = study.run(root, tmp_path / "study", jobs=1)
    assert sorted(result.runs["status"]) == ["failed", "ok"]
    summary = result.tables["summary"]
    assert summary["failed"].sum() == 1 and summary["ok"].sum() == 1
    assert any(path.name.startswith("ratio_") for path in result.figures)


def test_runs_without_any_evaluation_never_reach_an_accuracy(results):
    runs = study.load(results, defense=["median"], attack=["none"])
    table = study.per_run(runs, pd.DataFrame(columns=["path", "seed"]))  # no eval.csv rows
    assert table["steps_to_0.5"].isna().all() and len(table) == len(runs)
