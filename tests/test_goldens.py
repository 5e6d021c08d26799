"""Behaviour is pinned by golden outputs (tests/goldens.py): a change that alters what a
plugin or the harness computes fails here until its version is bumped and the goldens
regenerated, so that the stored results it made become stale at the same time."""
import pytest

from benchmark import behaviour, registry

from . import goldens

STORED = goldens.load()
UPDATE = "then run `python tests/goldens.py --update`"


def _plugins(kind):
    return sorted(name for name, plugin in registry.discover(kind).items() if plugin.error is None)


def _check(kind, name, version, actual):
    stored = STORED[kind].get(name)
    assert stored is not None, f"{kind} {name!r} has no golden yet: {UPDATE}"
    assert stored["version"] == version, (
        f"{kind} {name!r} is at version {version}, its golden at {stored['version']}: {UPDATE}")
    for part, value in actual.items():
        problem = goldens.close(stored.get(part), value, goldens.TOLERANCE["plugin"], part)
        assert problem is None, (
            f"{kind} {name!r} computes other numbers at the same version {version} "
            f"({problem}). If intended, bump `version=` in its module (its stored results "
            f"become stale), {UPDATE}; otherwise undo the change.")


@pytest.mark.parametrize("name", _plugins("defense"))
def test_defense_output_matches_its_version(name):
    version = registry.lookup("defense", name).spec.version
    _check("defense", name, version, {"output": goldens.defense_golden(name)})


@pytest.mark.parametrize("name", _plugins("attack"))
def test_attack_output_matches_its_version(name):
    version = registry.lookup("attack", name).spec.version
    _check("attack", name, version, {"output": goldens.attack_golden(name)})


@pytest.mark.parametrize("name", _plugins("task"))
def test_task_data_and_model_match_its_version(name):
    version = registry.lookup("task", name).spec.version
    actual = goldens.task_goldens(name)
    if "data" in STORED["task"].get(name, {}) and "data" not in actual:
        pytest.skip(f"{name}'s dataset is not on this machine; its model is still checked")
        return
    _check("task", name, version, actual)


@pytest.mark.parametrize("name", sorted(goldens.CANARIES))
def test_canary_run_matches_the_harness_version(name):
    run = goldens.canary_golden(name)
    if run is None:
        pytest.skip(f"canary {name}: its dataset is not on this machine")
    stored = STORED["canary"].get(name)
    assert stored is not None, f"canary {name!r} has no golden yet: {UPDATE}"
    changes = behaviour.differences(stored["versions"], goldens.canary_versions(name))
    assert not changes, f"canary {name!r}: versions changed ({'; '.join(changes)}): {UPDATE}"
    problem = goldens.close(stored["run"], run, goldens.TOLERANCE["canary"], "run")
    assert problem is None, (
        f"canary run {name!r} computes other numbers ({problem}) while every version it "
        f"involves is unchanged: the harness changed behaviour. If intended, bump HARNESS in "
        f"benchmark/behaviour.py (every stored result becomes stale), {UPDATE}; otherwise "
        f"undo the change.")


def test_goldens_file_is_for_this_harness_version():
    assert STORED["harness"] == behaviour.HARNESS, f"HARNESS changed: {UPDATE}"


def _with_median(monkeypatch, aggregate):
    import dataclasses

    original = registry.discover
    plugins = dict(original("defense"))
    median = plugins["median"]
    plugins["median"] = dataclasses.replace(
        median, spec=dataclasses.replace(median.spec, aggregate=aggregate))
    monkeypatch.setattr(registry, "discover",
                        lambda kind: plugins if kind == "defense" else original(kind))
    return median.spec.aggregate


def test_a_changed_output_at_the_same_version_fails_and_float_noise_does_not(monkeypatch):
    real = _with_median(monkeypatch, lambda gradients, f: real(gradients, f) * (1 + 1e-7))
    _check("defense", "median", 1, {"output": goldens.defense_golden("median")})  # noise
    monkeypatch.undo()
    real = _with_median(monkeypatch, lambda gradients, f: real(gradients, f) * 1.001)
    with pytest.raises(AssertionError, match="computes other numbers at the same version 1"):
        _check("defense", "median", 1, {"output": goldens.defense_golden("median")})
