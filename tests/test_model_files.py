"""Model directories: atomic writes, strict loading, and clear errors for broken or hostile files."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo.errors import ZooError


@pytest.fixture
def saved(tmp_path):
    model = zoo.build_model(d_model=16, num_heads=2, num_layers=1, vocab_size=30, seed=0)
    return model.save(tmp_path / "m")


def test_files_are_written_without_leftovers(saved):
    assert sorted(os.listdir(saved)) == ["config.json", "model.safetensors"]
    assert oct(os.stat(saved / "config.json").st_mode & 0o777) != "0o600"  # respects the umask, not mkstemp's


def edit_config(path, **changes):
    data = json.loads((path / "config.json").read_text())
    for dotted, value in changes.items():
        target = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    (path / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 99}, "format version 99 is newer than this zoo understands (2); upgrade zoo"),
        (
            {"parts__attention__name": "spda"},
            "needs attention 'spda', which plugin 'zoo.attention' no longer provides",
        ),
        (
            {"parts__attention__plugin": "os"},
            "needs attention 'sdpa' from plugin 'os', which is not installed",
        ),
        ({"parts__head__options": {"evil": 1}}, "unknown option 'evil' for head 'cls'"),
        ({"sizes__num_heads": "4"}, "num_heads must be a positive integer, got '4'"),
        ({"labels": [1, 2]}, "'labels' must be a list of strings"),
    ],
)
def test_bad_config_is_one_clear_error(saved, changes, message):
    edit_config(saved, **changes)
    with pytest.raises(ZooError) as err:
        zoo.load_model(saved)
    assert message in str(err.value)


def test_truncated_json(saved):
    (saved / "config.json").write_text('{"format_version": 1, "parts": {')
    with pytest.raises(ZooError, match=r"config\.json: not valid JSON"):
        zoo.load_model(saved)


def test_config_cannot_import_modules(saved):
    """A part is looked up in the registry only; a module path in config.json is just an unknown name."""
    edit_config(saved, parts__encoder__name="os:system")
    with pytest.raises(ZooError, match="no longer provides"):
        zoo.load_model(saved)


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooError, match=r"model.safetensors: not a valid safetensors file"):
        zoo.load_model(saved)


def test_pickle_is_never_loaded(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (saved / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ZooError, match="not a valid safetensors file"):
        zoo.load_model(saved)
    assert not marker.exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("head.classifier.bias"), "missing tensor 'head.classifier.bias'"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected tensor 'extra'"),
        (
            lambda s: s.update({"head.classifier.bias": torch.zeros(5)}),
            "tensor 'head.classifier.bias' has shape (5,), expected (2,)",
        ),
        (
            lambda s: s.update({"head.classifier.bias": torch.zeros(2, dtype=torch.float16)}),
            "tensor 'head.classifier.bias' has dtype F16, expected F32",
        ),
    ],
)
def test_wrong_tensors_name_file_and_tensor(saved, mutate, message):
    state = load_file(saved / "model.safetensors")
    mutate(state)
    save_file(state, saved / "model.safetensors")
    with pytest.raises(ZooError) as err:
        zoo.load_model(saved)
    assert str(saved / "model.safetensors") in str(err.value) and message in str(err.value)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ZooError, match="not a zoo model directory"):
        zoo.load_model(tmp_path)


@pytest.mark.parametrize(
    "sizes", [{"num_layers": 10**9}, {"vocab_size": 10**12}, {"d_model": 2**40, "num_heads": 1}]
)
def test_hostile_sizes_fail_before_allocating(saved, sizes):
    edit_config(saved, **{f"sizes__{k}": v for k, v in sizes.items()})
    with pytest.raises(ZooError, match=r"model.safetensors: tensor .* has shape|cannot build|num_layers is"):
        zoo.load_model(saved)
