"""Registry behaviour: resolution, suggestions, clashes, broken plugins, the allow-list."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo import hookimpl
from zoo.errors import ZooError
from zoo.manager import get_registry, plugin_infos


class Doubler(nn.Module):
    """A trivial third-party 'attention': returns 2x (ignores mask; fine for registry tests)."""

    def __init__(self, *, d_model, num_heads, dropout, scale: float = 2.0):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.scale = scale

    def forward(self, x, mask=None):
        return self.scale * self.proj(x)


class ThirdParty:
    @hookimpl
    def register_attention(self, register):
        register("doubler", Doubler, description="x2", aliases=["twice"])


class ClashesWithSdpa:
    @hookimpl
    def register_attention(self, register):
        register("sdpa", Doubler, description="an impostor")


def test_list_parts_has_builtins():
    parts = zoo.list_parts()
    assert {"mha", "sdpa", "gqa", "linear", "local", "alibi"} <= set(parts["attention"])
    assert {"transformer", "bert", "prenorm"} <= set(parts["encoder"])
    assert {"cls", "multilabel", "regression", "token-cls"} <= set(parts["head"])


def test_misspelt_name_suggests_closest():
    with pytest.raises(ZooError) as err:
        get_registry().resolve("attention", "spda")
    assert str(err.value).startswith("unknown attention 'spda'; did you mean 'sdpa'? choices: ")
    assert "mha" in str(err.value)


def test_third_party_part_registers_and_builds(inline_plugin):
    inline_plugin(ThirdParty(), "thirdparty")
    part = get_registry().resolve("attention", "twice")  # by alias
    assert (part.name, part.plugin) == ("doubler", "thirdparty")
    model = zoo.build_model(
        "transformer",
        "cls",
        "doubler",
        attention_options={"scale": 3.0},
        d_model=16,
        num_heads=2,
        num_layers=1,
        vocab_size=50,
    )
    assert model.spec.attention.plugin == "thirdparty"
    assert model.spec.attention.options == {"scale": 3.0}
    assert model.encoder.blocks[0].attention.scale == 3.0


def test_unknown_part_option_is_rejected_with_suggestion(inline_plugin):
    inline_plugin(ThirdParty(), "thirdparty")
    with pytest.raises(
        ZooError, match=r"unknown option 'scal' for attention 'doubler'; did you mean 'scale'\?"
    ):
        zoo.build_model("transformer", "cls", "doubler", attention_options={"scal": 1.0})


def test_clash_is_never_silent_and_plugin_prefix_picks(inline_plugin):
    inline_plugin(ClashesWithSdpa(), "impostor")
    with pytest.raises(ZooError) as err:
        get_registry().resolve("attention", "sdpa")
    message = str(err.value)
    assert "'zoo.attention'" in message and "'impostor'" in message
    assert "'zoo.attention:sdpa'" in message and "'impostor:sdpa'" in message
    assert get_registry().resolve("attention", "impostor:sdpa").factory is Doubler
    assert get_registry().resolve("attention", "zoo.attention:sdpa").plugin == "zoo.attention"
    get_registry().resolve("attention", "mha")  # the other parts keep working


def test_saved_model_keeps_its_plugin_through_a_later_clash(inline_plugin, tmp_path):
    model = zoo.build_model(d_model=16, num_heads=2, num_layers=1, vocab_size=50)
    model.save(tmp_path / "m")
    inline_plugin(ClashesWithSdpa(), "impostor")
    loaded = zoo.load_model(tmp_path / "m")  # config.json says zoo.attention:sdpa
    assert type(loaded.encoder.blocks[0].attention).__name__ == "SDPAttention"


def test_hook_that_raises_is_reported_and_others_work(inline_plugin, capsys):
    class Broken:
        @hookimpl
        def register_heads(self, register):
            raise RuntimeError("boom")

    inline_plugin(Broken(), "broken")
    assert "cls" in zoo.list_parts()["head"]
    assert "plugin 'broken' failed in register_heads: RuntimeError: boom" in capsys.readouterr().err
    info = next(i for i in plugin_infos() if i.name == "broken")
    assert info.errors == ["register_heads raised RuntimeError: boom"]


def test_lazy_factory_that_fails_to_import_names_the_plugin(inline_plugin):
    class Lazy:
        @hookimpl
        def register_attention(self, register):
            register("ghost", "no_such_module_xyz:Ghost")

    inline_plugin(Lazy(), "lazy")
    assert "ghost" in zoo.list_parts()["attention"]  # listing does not import it
    with pytest.raises(
        ZooError, match=r"attention 'ghost' from plugin 'lazy' failed to load from no_such_module_xyz:Ghost"
    ):
        zoo.build_model(attention="ghost")


def test_invalid_registration_is_a_plugin_error(inline_plugin, capsys):
    class Bad:
        @hookimpl
        def register_encoders(self, register):
            register("a:b", object)

    inline_plugin(Bad(), "bad")
    assert "a:b" not in zoo.list_parts()["encoder"]
    assert "plugin 'bad' failed in register_encoders" in capsys.readouterr().err


def test_loading_a_model_whose_plugin_is_gone(inline_plugin, tmp_path):
    from zoo.manager import pm

    inline_plugin(ThirdParty(), "thirdparty")
    zoo.build_model(attention="doubler", d_model=16, num_heads=2, num_layers=1, vocab_size=50).save(
        tmp_path / "m"
    )
    pm.unregister(name="thirdparty")
    with pytest.raises(
        ZooError, match=r"needs attention 'doubler' from plugin 'thirdparty', which is not installed"
    ):
        zoo.load_model(tmp_path / "m")


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"d_model": 30, "num_heads": 4}, r"d_model \(30\) must be divisible by num_heads \(4\)"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"num_layers": 0}, "num_layers must be a positive integer"),
        ({"d_modle": 8}, r"unknown option 'd_modle'; did you mean 'd_model'\?"),
    ],
)
def test_size_errors(sizes, message):
    with pytest.raises(ZooError, match=message):
        zoo.build_model(**sizes)


def test_save_load_roundtrip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = zoo.build_model(
        "prenorm",
        "cls",
        "gqa",
        attention_options={"num_kv_heads": 1},
        labels=["a", "b", "c"],
        d_model=32,
        num_heads=4,
        num_layers=2,
        vocab_size=100,
    ).eval()
    model.save(tmp_path / "m")
    loaded = zoo.load_model(tmp_path / "m")
    ids = torch.randint(0, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    assert torch.equal(model(ids, mask), loaded(ids, mask))
    assert loaded.labels == ["a", "b", "c"]
    assert loaded.spec.to_dict() == model.spec.to_dict()


def test_trace_logs_each_hook_call_with_its_time():
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "ZOO_TRACE_PLUGINS": "1", "ZOO_LOAD_PLUGINS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "parts", "--json"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("zoo: trace: ")]
    for plugin, hook in [
        ("zoo.attention", "register_attention"),
        ("zoo.encoders", "register_encoders"),
        ("zoo.heads", "register_heads"),
    ]:
        assert any(
            re.fullmatch(rf"zoo: trace: {re.escape(plugin)}\.{hook} took \d+\.\d ms", line) for line in lines
        ), lines
