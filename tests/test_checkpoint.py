"""A run stopped at any point and resumed from its checkpoint writes the same bytes as the
same run done in one go; checkpoints are atomic, pruned, tied to their run."""
import pytest
import torch

from benchmark import behaviour, checkpoint, engine, provenance, registry, store
from benchmark.api import UsageError
from benchmark.cells import run_cell
from benchmark.config import make_config

EVERY = 4   # checkpoint every 4 steps; runs of 14 steps, evaluated every 3


class Preempted(BaseException):
    """Stands for the process being killed: nothing in the harness catches it."""


def preempt_at(monkeypatch, stop):
    """Makes the next run die when it is about to run step `stop`."""
    original = engine.Simulation.step

    def step(self):
        if self.step_index == stop:
            raise Preempted
        return original(self)

    monkeypatch.setattr(engine.Simulation, "step", step)


def files_of(folder):
    return {name: (folder / name).read_bytes() for name in ("metrics.csv", "eval.csv")}


def stop_and_resume(config, root, monkeypatch, stop, required=True):
    with monkeypatch.context() as patch:
        preempt_at(patch, stop)
        with pytest.raises(Preempted):
            run_cell(config, root)
    return run_cell(config, root, require_checkpoint=required)


# A stateful and randomized rule, and a task whose model draws from torch's global
# generator (dropout): their states must travel through the checkpoint too.
NOISY_CENTER = """
    import torch
    from benchmark.api import Defense

    def aggregate(gradients, f, *, state, generator):
        center = state.get("center", torch.zeros_like(gradients[0]))
        pick = int(torch.randint(len(gradients), (1,), generator=generator))
        state["center"] = 0.5 * center + 0.5 * gradients[pick]
        return (state["center"] + gradients.median(dim=0).values) / 2

    defense = Defense(name="noisy-center", aggregate=aggregate, stateful=True,
                      randomized=True)
"""
DROPOUT_TASK = """
    import torch
    from benchmark.api import Task, TaskData

    def load(data_dir=None):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(300, 4, generator=generator)
        targets = (inputs.sum(dim=1) > 0).long()
        return TaskData(inputs[:240], targets[:240], inputs[240:], targets[240:], num_classes=2)

    def model():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))

    task = Task(name="dropout-task", load=load, model=model,
                defaults=dict(n=7, batch_size=8, steps=14, lr=0.1, eval_every=3))
"""


def config_for(**settings):
    values = dict(task="template", n=7, f=2, defense="median", attack="little", steps=14,
                  eval_every=3, checkpoint_every=EVERY)
    values.update(settings)
    return make_config(**values)


CASES = {
    "update": dict(momentum_at="update"),
    "worker": dict(momentum_at="worker"),
    "server": dict(momentum_at="server"),
    "worker-nesterov-random-attack": dict(momentum_at="worker", nesterov=True,
                                          attack="gaussian:sigma=3.0"),
    # the server's root sampler and its momentum of root gradients travel too
    "fltrust-worker": dict(momentum_at="worker", defense="fltrust"),
    # a stateful attack's state (rop: its running momentum) and the jitter stream travel
    "stateful-attack-jitter": dict(momentum_at="worker", attack="rop", attack_jitter=0.05),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stop", [8, 10, 13])  # right after a checkpoint, between, last step
def test_resumed_run_writes_the_same_bytes(tmp_path, monkeypatch, case, stop):
    config = config_for(**CASES[case])
    reference = run_cell(config, tmp_path / "once")
    resumed = stop_and_resume(config, tmp_path / "twice", monkeypatch, stop)
    assert resumed.status == reference.status == "ok"
    assert files_of(resumed.folder) == files_of(reference.folder)
    assert resumed.summary == reference.summary
    record = store.read_run(resumed.folder)
    assert record["resumed_from_step"] == stop // EVERY * EVERY
    assert not checkpoint.folder_for(resumed.folder).exists()  # removed once published
    assert store.seal_problem(resumed.folder, record) is None


def test_stateful_randomized_defense_and_global_generator(tmp_path, monkeypatch, plugin_dir):
    from tests.plugin_fixtures import write_plugin
    write_plugin(plugin_dir, "defenses", "noisy_center", NOISY_CENTER)
    write_plugin(plugin_dir, "tasks", "dropout_task", DROPOUT_TASK)
    config = config_for(task="dropout-task", defense="noisy-center", attack="empire",
                        momentum_at="update")
    reference = run_cell(config, tmp_path / "once")
    resumed = stop_and_resume(config, tmp_path / "twice", monkeypatch, 10)
    assert files_of(resumed.folder) == files_of(reference.folder)


@pytest.mark.skipif("cclip" not in registry.discover("defense"),
                    reason="defenses/cclip.py not written yet")
@pytest.mark.parametrize("placement", ["worker", "update"])
def test_centered_clipping_resumes_exactly(tmp_path, monkeypatch, placement):
    config = config_for(defense="cclip:tau=0.5", momentum_at=placement)
    reference = run_cell(config, tmp_path / "once")
    resumed = stop_and_resume(config, tmp_path / "twice", monkeypatch, 9)
    assert files_of(resumed.folder) == files_of(reference.folder)


def test_state_dict_round_trip_continues_identically():
    config = config_for(momentum_at="worker", defense="cclip" if "cclip" in registry.discover(
        "defense") else "median")
    first = engine.Simulation(config)
    rows = [first.step() for _ in range(5)]
    saved = first.state_dict()
    expected = [first.step() for _ in range(4)]
    second = engine.Simulation(config)
    second.load_state_dict(saved)
    assert [second.step() for _ in range(4)] == expected
    assert torch.equal(second.theta, first.theta) and len(rows) == 5


def test_interrupted_run_resumes_by_itself_in_a_matrix(tmp_path, monkeypatch):
    """Without --resume (what the matrix executors call), a checkpoint is used when present."""
    config = config_for(momentum_at="worker")
    reference = run_cell(config, tmp_path / "once")
    with monkeypatch.context() as patch:
        preempt_at(patch, 13)
        with pytest.raises(Preempted):
            run_cell(config, tmp_path / "twice")
    calls, original = [], engine.Simulation.step
    monkeypatch.setattr(engine.Simulation, "step",
                        lambda self: calls.append(self.step_index) or original(self))
    resumed = run_cell(config, tmp_path / "twice")
    assert calls == [12, 13]  # from its last checkpoint, not from step 0
    assert files_of(resumed.folder) == files_of(reference.folder)


def test_resume_with_nothing_to_resume_is_a_usage_error(tmp_path, monkeypatch):
    config = config_for()
    with pytest.raises(UsageError, match="nothing to resume"):
        run_cell(config, tmp_path, require_checkpoint=True)
    with monkeypatch.context() as patch:  # stopped before its first checkpoint
        preempt_at(patch, 2)
        with pytest.raises(Preempted):
            run_cell(config, tmp_path)
    with pytest.raises(UsageError, match="--checkpoint-every"):
        run_cell(config, tmp_path, require_checkpoint=True)


def interrupted_checkpoint(config, root, monkeypatch):
    with monkeypatch.context() as patch:
        preempt_at(patch, 9)
        with pytest.raises(Preempted):
            run_cell(config, root)
    return checkpoint.folder_for(store.cell_dir(root, config))


@pytest.mark.parametrize("change, reason", [
    (dict(defense="average"), "defense='median' (this run: 'average')"),
    (dict(attack="empire"), "attack='little' (this run: 'empire')"),
    (dict(task="digits", n=7), "task='template' (this run: 'digits')"),
    (dict(n=9), "n=7 (this run: 9)"),
    (dict(f=1), "f=2 (this run: 1)"),
    (dict(seed=2), "seed=1 (this run: 2)"),
])
def test_a_checkpoint_of_another_config_is_refused(tmp_path, monkeypatch, change, reason):
    config = config_for()
    folder = interrupted_checkpoint(config, tmp_path, monkeypatch)
    other = config_for(**change)
    target = checkpoint.folder_for(store.cell_dir(tmp_path, other))
    target.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(target)  # moved by hand
    with pytest.raises(UsageError, match="another configuration") as refusal:
        run_cell(other, tmp_path, require_checkpoint=True)
    assert reason in str(refusal.value)


def test_a_checkpoint_of_other_behaviour_is_refused_or_set_aside(tmp_path, monkeypatch):
    config = config_for()
    reference = run_cell(config, tmp_path / "once")
    interrupted_checkpoint(config, tmp_path, monkeypatch)
    monkeypatch.setattr(behaviour, "HARNESS", behaviour.HARNESS + 1)
    with pytest.raises(UsageError, match="behaviour changed.*harness 1 → 2"):
        run_cell(config, tmp_path, require_checkpoint=True)
    with pytest.warns(UserWarning, match="starting from step 0"):
        result = run_cell(config, tmp_path)  # the matrix's way: start again, correctly
    assert "resumed_from_step" not in store.read_run(result.folder)
    assert files_of(result.folder) == files_of(reference.folder)


def test_a_checkpoint_survives_a_refactor_of_the_code(tmp_path, monkeypatch):
    config = config_for()
    reference = run_cell(config, tmp_path / "once")
    interrupted_checkpoint(config, tmp_path, monkeypatch)
    real = provenance.code_hashes
    monkeypatch.setattr(provenance, "code_hashes", lambda c: {**real(c), "harness": "0" * 64})
    result = run_cell(config, tmp_path, require_checkpoint=True)
    assert store.read_run(result.folder)["resumed_from_step"] == 8
    assert files_of(result.folder) == files_of(reference.folder)


def test_other_settings_are_named_when_there_is_nothing_to_resume(tmp_path, monkeypatch):
    interrupted_checkpoint(config_for(), tmp_path, monkeypatch)
    with pytest.raises(UsageError, match="other settings"):
        run_cell(config_for(lr=0.05), tmp_path, require_checkpoint=True)


def test_checkpoint_every_does_not_change_the_cell(tmp_path):
    with_checkpoints, without = config_for(), config_for(checkpoint_every=None)
    assert with_checkpoints.hash() == without.hash()
    first = run_cell(with_checkpoints, tmp_path / "a")
    second = run_cell(without, tmp_path / "b")
    assert files_of(first.folder) == files_of(second.folder)
    with pytest.raises(UsageError, match="checkpoint_every"):
        config_for(checkpoint_every=0)


def test_writes_are_atomic_and_old_checkpoints_pruned(tmp_path, monkeypatch):
    config = config_for()
    folder = interrupted_checkpoint(config, tmp_path, monkeypatch)
    assert [path.name for path in checkpoint.files(folder)] == ["step-00000008.pt"]
    before = (folder / "step-00000008.pt").read_bytes()

    def torn_write(payload, handle):  # the disk fills up halfway through a write
        handle.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError):
        checkpoint.save(folder, {"step": 12})
    assert [path.name for path in folder.iterdir()] == ["step-00000008.pt"]
    assert (folder / "step-00000008.pt").read_bytes() == before


def test_kept_checkpoint_is_in_the_result_folder_only_when_asked(tmp_path):
    config = config_for()
    plain = run_cell(config, tmp_path / "plain")
    assert not (plain.folder / checkpoint.KEPT_NAME).exists()
    kept = run_cell(config, tmp_path / "kept", keep_checkpoint=True)
    saved = checkpoint.load(kept.folder / checkpoint.KEPT_NAME, config,
                            behaviour.of_config(config))
    assert saved["step"] == config.steps and len(saved["metrics"]) == config.steps
    assert files_of(kept.folder) == files_of(plain.folder)


def test_cli_resume_without_checkpoint_exits_2(tmp_path, capsys):
    from benchmark.cli import main
    assert main(["cell", "--task", "template", "--steps", "3", "--resume",
                 "--out", str(tmp_path)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["cell", "--task", "template", "--resume", "--force"]) == 2
