"""Hypothesis: any config.json, mutated or truncated, loads correctly or fails with a ZooError, never
anything else."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.errors import ZooError
from zoo.spec import ModelSpec

MODEL = zoo.build_model(d_model=16, num_heads=2, num_layers=1, vocab_size=30, labels=["a", "b"])
BASE = MODEL.spec.to_dict()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from paths(value, (*prefix, key))


ALL_PATHS = [p for p in paths(BASE) if p]


def replaced(obj, path, value):
    obj = json.loads(json.dumps(obj))
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(ALL_PATHS), value=json_values | st.just(...))
def test_mutated_config(tmp_path, path, value):
    """Through the whole load: either a model whose weights fit, or one clean line."""
    MODEL.save(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(replaced(BASE, path, value)))
    try:
        model = zoo.load_model(tmp_path)
    except ZooError as exc:
        assert "\n" not in str(exc)
        return
    assert model.spec.sizes["d_model"] % model.spec.sizes["num_heads"] == 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(cut=st.integers(0, len(json.dumps(BASE)) - 1))
def test_truncated_config(tmp_path_factory, cut):
    directory = tmp_path_factory.mktemp("cfg")
    (directory / "config.json").write_text(json.dumps(BASE)[:cut])
    try:
        ModelSpec.read(directory)
    except ZooError as exc:
        assert "config.json" in str(exc)
    else:
        raise AssertionError("a truncated config.json loaded")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(raw=st.binary(max_size=64))
def test_random_bytes(tmp_path_factory, raw):
    directory = tmp_path_factory.mktemp("cfg")
    (directory / "config.json").write_bytes(raw)
    with contextlib.suppress(ZooError):
        ModelSpec.read(directory)
