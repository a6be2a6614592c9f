"""The conformance kit itself: it passes good parts and catches broken ones with plugin-author messages.

Broken parts are registered by an inline plugin (the `inline_plugin` fixture unregisters it in finally).
"""

from __future__ import annotations

import importlib.util
import random
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from script_fixtures import FinfoMaxHead, ScriptableMaxHead
from torch import nn

import zoo
import zoo.export
from zoo import hookimpl, testing
from zoo.errors import ExportMismatch, ZooError
from zoo.nn import QKVAttention, dtype_min, key_mask, padding_bias, scaled_dot_product
from zoo.plugins.encoders.transformer import TutorialTransformer


class InlinePlugin:
    """Registers {name: factory or (factory, metadata)} for each kind."""

    def __init__(self, attention=None, encoders=None, heads=None):
        self.tables = {"attention": attention or {}, "encoders": encoders or {}, "heads": heads or {}}

    def _register(self, kind, register):
        for name, entry in self.tables[kind].items():
            factory, meta = entry if isinstance(entry, tuple) else (entry, {})
            register(name, factory, **meta)

    @hookimpl
    def register_attention(self, register):
        self._register("attention", register)

    @hookimpl
    def register_encoders(self, register):
        self._register("encoders", register)

    @hookimpl
    def register_heads(self, register):
        self._register("heads", register)


class GoodAttention(QKVAttention):
    def attend(self, q, k, v, mask):
        bias = None if mask is None else padding_bias(key_mask(mask), q.dtype)
        return scaled_dot_product(q, k, v, bias, self.active_dropout)


class IgnoresMask(QKVAttention):
    def attend(self, q, k, v, mask):
        return scaled_dot_product(q, k, v, None, 0.0)


class UnusedParameter(GoodAttention):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.temperature = nn.Parameter(torch.ones(1))  # never used in forward


class HalfWidth(GoodAttention):
    def forward(self, x, mask=None):
        return super().forward(x, mask)[..., : x.shape[-1] // 2]


class DropoutInEval(GoodAttention):
    def forward(self, x, mask=None):
        return F.dropout(super().forward(x, mask), 0.5, training=True)


class NonPersistentState(GoodAttention):
    """A random tensor the output depends on, kept out of the state dict: it cannot survive save/load."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("offset", torch.randn(kwargs["d_model"]), persistent=False)

    def forward(self, x, mask=None):
        return super().forward(x, mask) + self.offset


class PythonRandomInit(GoodAttention):
    """Initial values from Python's random module, which the seed does not control."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = nn.Parameter(torch.tensor([random.random() + 0.5]))

    def forward(self, x, mask=None):
        return super().forward(x, mask) * self.scale


class NoDModel(TutorialTransformer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.d_model


class MeanOverPadding(nn.Module):
    """A classification head whose mean pooling counts the padding too."""

    def __init__(self, *, d_model, num_labels, dropout):
        super().__init__()
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden, mask=None):
        return self.classifier(hidden.mean(dim=1))

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits, labels)


def failing_factory(**kwargs):
    raise RuntimeError("no kernel for this device")


@pytest.fixture
def kit_parts(inline_plugin):
    inline_plugin(
        InlinePlugin(
            attention={
                "kit-good": GoodAttention,
                "kit-nomask": IgnoresMask,
                "kit-unused": UnusedParameter,
                "kit-half": HalfWidth,
                "kit-dropout": DropoutInEval,
                "kit-state": NonPersistentState,
                "kit-pyrandom": PythonRandomInit,
                "kit-fails": failing_factory,
                "kit-noexport": (GoodAttention, {"capabilities": {"onnx": False, "torchscript": False}}),
                "kit-noonnx": (GoodAttention, {"capabilities": {"onnx": False}}),
            },
            encoders={"kit-nodmodel": NoDModel},
            heads={
                "kit-meanpad": (MeanOverPadding, {"capabilities": {"labels": "class"}}),
                "kit-nolabels": MeanOverPadding,
            },
        ),
        name="kit-plugin",
    )


def check_attention(name, **kwargs):
    return testing.check_part("attention", name, partners=["transformer"], export=False, **kwargs)


def test_a_good_third_party_attention_passes_with_every_builtin_encoder(kit_parts):
    done = testing.check_part("attention", "kit-good", export=False)
    assert done == [
        f"attention 'kit-good' with encoder '{e}' and head 'cls'"
        for e in ("bert", "deberta", "modernbert", "prenorm", "transformer")
    ]


def test_attention_that_ignores_the_mask_fails_the_padding_check(kit_parts):
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "attention 'kit-nomask' with encoder 'transformer' and head 'cls': output at real tokens changed by "
        ),
    ) as err:
        check_attention("kit-nomask")
    assert re.search(
        r"changed by \d\.\de[-+]\d\d when padding was added \(tolerance 1e-05\); the mask is True "
        r"for real tokens, False for padding$",
        str(err.value),
    )


def test_unused_parameter_fails_the_gradient_check(kit_parts):
    with pytest.raises(AssertionError) as err:
        check_attention("kit-unused")
    assert str(err.value) == (
        "attention 'kit-unused' with encoder 'transformer' and head 'cls': parameter "
        "'encoder.blocks.0.attention.temperature' (and 1 more) received no gradient; "
        "is it used in forward?"
    )


def test_wrong_output_shape_fails_the_attention_contract(kit_parts):
    with pytest.raises(AssertionError) as err:
        check_attention("kit-half")
    assert str(err.value) == (
        "attention 'kit-half' with encoder 'transformer' and head 'cls': forward(x, mask) "
        "returned (2, 5, 8); expected a tensor shaped like x (2, 5, 16)"
    )


def test_dropout_in_eval_mode_is_caught(kit_parts):
    with pytest.raises(
        AssertionError,
        match=r"two eval-mode calls on the same input differ by .*is dropout or "
        r"sampling active outside training\?",
    ):
        check_attention("kit-dropout")


def test_state_outside_the_state_dict_fails_save_load(kit_parts):
    with pytest.raises(AssertionError, match=r"'kit-state' .*: the reloaded model's outputs differ by "):
        check_attention("kit-state")


def test_initialisation_outside_torch_rng_fails_determinism(kit_parts):
    with pytest.raises(AssertionError) as err:
        check_attention("kit-pyrandom")
    assert str(err.value) == (
        "attention 'kit-pyrandom' with encoder 'transformer' and head 'cls': two builds with "
        "seed 0 differ in 'encoder.blocks.0.attention.scale'; draw initial values from "
        "torch's global RNG only"
    )


def test_a_factory_that_raises_is_reported_with_its_error(kit_parts):
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "attention 'kit-fails' with encoder 'transformer' and head 'cls': factory(d_model=16, num_heads=2, "
            "dropout=0.0) failed: RuntimeError: no kernel for this device"
        ),
    ):
        check_attention("kit-fails")


def test_encoder_without_d_model_names_the_encoder_first(kit_parts):
    with pytest.raises(AssertionError) as err:
        testing.check_part("encoder", "kit-nodmodel", partners=["mha"], export=False)
    assert str(err.value) == (
        "encoder 'kit-nodmodel' with attention 'mha' and head 'cls': the encoder module has "
        "no integer `d_model` attribute (the head is built with it)"
    )


def test_head_pooling_over_padding_fails(kit_parts):
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "head 'kit-meanpad' with encoder 'transformer' and attention 'sdpa': head output changed by "
        ),
    ):
        testing.check_part("head", "kit-meanpad", export=False)


def test_head_without_a_task_is_told_what_to_declare(kit_parts):
    with pytest.raises(AssertionError) as err:
        testing.check_part("head", "kit-nolabels", export=False)
    assert str(err.value) == (
        "head 'kit-nolabels' with encoder 'transformer' and attention 'sdpa': building the "
        "model failed: head 'kit-nolabels' (plugin 'kit-plugin') names no task; register it "
        "with task=..."
    )


def test_labels_match_each_task():
    g = torch.Generator().manual_seed(0)
    assert testing.make_labels("classification", 4, 7, 3, g).shape == (4,)
    multi = testing.make_labels("multilabel", 4, 7, 3, g)
    assert multi.shape == (4, 3) and set(multi.unique().tolist()) <= {0.0, 1.0}
    assert testing.make_labels("regression", 4, 7, 1, g).shape == (4,)
    assert testing.make_labels("regression", 4, 7, 3, g).shape == (4, 3)
    token = testing.make_labels("token-classification", 4, 7, 3, g)
    assert token.shape == (4, 7) and token.max() < 3


def test_unknown_names_are_zoo_errors_with_a_suggestion():
    with pytest.raises(ZooError, match=r"^unknown attention 'spda'; did you mean 'sdpa'\? choices: "):
        testing.check_part("attention", "spda")
    with pytest.raises(ZooError, match=r"^unknown part kind 'atention'; did you mean 'attention'\?"):
        testing.check_part("atention", "sdpa")


def test_parts_reads_the_live_registry_and_marks_clashes_and_exclusions(kit_parts, inline_plugin):
    ids = [p.id for p in testing.parts("attention")]
    assert "kit-good" in ids and "sdpa" in ids
    inline_plugin(InlinePlugin(attention={"kit-good": GoodAttention}), name="kit-rival")
    ids = [p.id for p in testing.parts("attention", exclude={"sdpa": "not today"})]
    assert "kit-plugin:kit-good" in ids and "kit-rival:kit-good" in ids and "kit-good" not in ids
    skipped = [p for p in testing.parts("attention", exclude={"sdpa": "not today"}) if p.marks]
    assert [p.id for p in skipped] == ["sdpa"] and skipped[0].marks[0].kwargs["reason"] == "not today"


def test_export_is_skipped_for_parts_that_declare_they_cannot(kit_parts, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("export_model called for a part that cannot export")

    monkeypatch.setitem(vars(zoo.export), "export_model", must_not_run)
    ran = testing.check_model(attention="kit-noexport", export=True)
    assert "export" not in ran and ran[-1] == "save-load"

    calls = []
    monkeypatch.setitem(
        vars(zoo.export), "export_model", lambda model, path, **formats: calls.append(formats)
    )
    assert testing.check_model(attention="kit-noonnx", export=True)[-1] == "export"
    assert calls == [{"onnx": False, "torchscript": True}]


def test_export_mismatch_becomes_a_plugin_author_message(kit_parts, monkeypatch):
    calls = []

    def mismatch(model, path, *, onnx, torchscript):
        calls.append((onnx, torchscript))
        raise ExportMismatch("onnx logits differ by 3.0e-02 at batch 2, seq 17")

    monkeypatch.setitem(vars(zoo.export), "export_model", mismatch)
    with pytest.raises(AssertionError) as err:
        testing.check_model(attention="kit-good", encoder="bert", export=True)
    assert calls == [(True, True)]
    assert str(err.value) == (
        "attention 'kit-good' with encoder 'bert' and head 'cls': the ONNX and TorchScript "
        "export does not match the eager model: onnx logits differ by 3.0e-02 at batch 2, seq 17"
    )


@pytest.mark.slow
def test_real_export_parity_for_one_builtin():
    if importlib.util.find_spec("zoo.export.pipeline") is None:
        pytest.skip("zoo.export.export_model is not written yet")
    ran = testing.check_model(attention="sdpa", encoder="transformer", head="cls", export=True)
    assert ran[-1] == "export"


# --- issue 20: the mask and loss a head gets, and TorchScript of a part on its own ---------------------------


class PerRowLoss(ScriptableMaxHead):
    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits.float(), labels.long(), reduction="none")


class NeedsAMask(ScriptableMaxHead):
    """Treats mask=None as 'no token is real' instead of 'every token is'."""

    def forward(self, hidden, mask=None):
        if mask is None:
            return self.classifier(torch.zeros_like(hidden[:, 0]))
        return super().forward(hidden, mask)


@pytest.fixture
def script_heads(inline_plugin):
    cls = {"task": "classification"}
    inline_plugin(
        InlinePlugin(
            heads={
                "kit-max": (ScriptableMaxHead, {**cls, "capabilities": {"torchscript": "script"}}),
                "kit-finfo": (FinfoMaxHead, cls),
                "kit-finfo-promised": (FinfoMaxHead, {**cls, "capabilities": {"torchscript": "script"}}),
                "kit-finfo-declared": (FinfoMaxHead, {**cls, "capabilities": {"torchscript": "trace"}}),
                "kit-perrow": (PerRowLoss, cls),
                "kit-needsmask": (NeedsAMask, cls),
            }
        ),
        name="kit-heads",
    )


def test_the_head_gets_a_bool_mask_or_none_and_the_loss_gets_the_same(script_heads):
    model = zoo.build_model("transformer", "kit-max", **testing.TINY_SIZES)
    seen = []
    model.head.register_forward_pre_hook(lambda head, args: seen.append(args[1]))
    ids, mask = testing.make_batch(testing.Case("transformer", "sdpa", "kit-max"))
    model(ids, mask)
    model(ids)
    assert mask.dtype == torch.int64 and seen[0].dtype == torch.bool and torch.equal(seen[0], mask.bool())
    assert seen[1] is None
    ran = testing.check_model(head="kit-max", focus="head", export=False)
    assert "mask-and-loss" in ran


def test_a_loss_that_is_not_a_scalar_fails(script_heads):
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "head 'kit-perrow' with encoder 'transformer' and attention 'sdpa': head loss(logits, labels, mask) "
            "with a bool mask returned tensor("
        ),
    ) as err:
        testing.check_part("head", "kit-perrow", export=False)
    assert "expected a finite scalar tensor (the mean over the batch)" in str(err.value)


def test_a_head_must_read_mask_none_as_every_token_real(script_heads):
    with pytest.raises(AssertionError, match="head output with mask=None differs from an all-True mask by"):
        testing.check_part("head", "kit-needsmask", export=False)


def test_check_script_scripts_the_part_alone_and_names_the_construct(script_heads):
    assert testing.check_script("head", "kit-max") == "script"
    assert [testing.check_script(k, n) for k, n in (("attention", "sdpa"), ("encoder", "bert"))] == [
        "script"
    ] * 2
    with pytest.raises(AssertionError) as err:
        testing.check_script("head", "kit-finfo")
    message = str(err.value)
    assert message.startswith(
        "head 'kit-finfo' with encoder 'transformer' and attention 'sdpa': does not compile "
        "with torch.jit.script: RuntimeError: Unknown builtin op: aten::finfo at "
    )
    assert re.search(
        r"script_fixtures\.py:\d+ `hidden = hidden\.masked_fill\(~mask\[\.\.\., None\], torch\.finfo", message
    )


def test_check_part_warns_fails_or_stays_quiet_as_the_part_declares(script_heads, monkeypatch):
    exported = []
    monkeypatch.setitem(
        vars(zoo.export), "export_model", lambda model, path, **formats: exported.append(formats)
    )
    with pytest.warns(
        testing.TorchScriptFallback,
        match=re.escape(
            "head 'kit-finfo' (plugin 'kit-heads') does not compile with torch.jit.script, so `zoo export "
            "--torchscript` traces models that use it: RuntimeError: Unknown builtin op: aten::finfo at "
        ),
    ):
        ran = testing.check_model(head="kit-finfo", focus="head")
    assert "torchscript-trace" in ran and ran[-1] == "export"
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "head 'kit-finfo-promised' (plugin 'kit-heads') does not compile with torch.jit.script, although it "
            "declares capabilities={'torchscript': 'script'}: RuntimeError: Unknown builtin op: aten::finfo"
        ),
    ):
        testing.check_part("head", "kit-finfo-promised")
    with warnings.catch_warnings():
        warnings.simplefilter("error", testing.TorchScriptFallback)
        ran = testing.check_model(head="kit-finfo-declared", focus="head")
        assert not any(r.startswith("torchscript-") for r in ran)
        assert "torchscript-script" in testing.check_model(head="kit-max", focus="head")


def test_dtype_min_is_finfo_min_in_eager_and_scripted_code():
    scripted = torch.jit.script(dtype_min)
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        assert dtype_min(dtype) == torch.finfo(dtype).min == scripted(dtype)
