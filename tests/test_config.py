"""The config hash: what identifies a stored cell."""
import dataclasses
import hashlib
import json

import pytest

from benchmark import registry
from benchmark.api import UsageError
from benchmark.config import NEUTRAL, NOT_HASHED, RunConfig, make_config


def test_a_field_at_its_neutral_value_leaves_the_hash_as_before_it_existed():
    config = make_config(task="digits", defense="median", attack="little")
    before = {k: v for k, v in config.to_dict().items()
              if k not in NOT_HASHED and k not in NEUTRAL}  # as if those fields did not exist
    text = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert config.hash() == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_every_field_that_changes_a_number_changes_the_hash():
    config = make_config(task="digits", defense="median", attack="little")
    changed = {"local_steps": 2, "split": "dirichlet", "f_real": 1, "seed": 2, "lr": 0.05,
               "alpha": 0.5, "shards": 3}
    hashes = {dataclasses.replace(config, **{k: v}).hash() for k, v in changed.items()}
    assert config.hash() not in hashes and len(hashes) == len(changed)
    assert dataclasses.replace(config, time_budget=5.0).hash() == config.hash()


def test_neutral_fields_are_config_fields():
    names = {field.name for field in dataclasses.fields(RunConfig)}
    assert set(NEUTRAL) <= names and not set(NEUTRAL) & NOT_HASHED


def test_settings_are_type_checked_without_changing_any_valid_hash():
    """A whole number where a float is expected is kept as it is (a profile's `l2 = 0`, `--set
    lr=1`): converting it would change the hash of results stored with it."""
    config = make_config(task="digits", defense="median", attack="little", lr=1, l2=0)
    identity = {k: v for k, v in config.to_dict().items()
                if k not in NOT_HASHED and (k not in NEUTRAL or v != NEUTRAL[k])}
    assert type(identity["lr"]) is int and type(identity["l2"]) is int
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert config.hash() == hashlib.sha256(text.encode()).hexdigest()[:16]
    for task in registry.names("task") + ["template"]:
        make_config(task=task)  # every task's defaults pass
    with pytest.raises(UsageError, match="n must be a whole number, not 11.5"):
        make_config(n=11.5)
    with pytest.raises(UsageError, match="f_real must be a whole number or null, not '1'"):
        make_config(f_real="1")
