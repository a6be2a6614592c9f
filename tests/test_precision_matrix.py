"""Every registered attention x encoder, and every head, under CPU bf16: a training step's forward and
backward under autocast (every parameter gets a finite fp32 gradient), and inference with the weights held in
bf16 (finite, and the same predictions as fp32 on the kit's batch within bf16's tolerance). The parametrisation
reads the live registry, so a plugin's part joins automatically."""

from __future__ import annotations

import copy

import pytest
import torch

from zoo import testing
from zoo.precision import cast_weights


def _check(encoder: str, attention: str, head: str, focus: str) -> None:
    case = testing.Case(encoder, attention, head, focus)
    model = testing.build(case)
    batch = testing.make_batch(case)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        testing.check_backward(case, model, batch)  # raises with the part's name on failure
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # master weights stay fp32
    model.eval()
    ids, mask = batch
    with torch.inference_mode():
        reference = model(ids, mask)
        held = cast_weights(copy.deepcopy(model))(ids, mask)
    assert held.dtype == torch.bfloat16, case.label
    assert torch.isfinite(held.float()).all(), f"{case.label}: NaN or inf with bf16 weights"
    real = mask.bool() if reference.dim() == 3 else slice(None)
    scale = reference.abs().max().item() + 1.0
    diff = (held.float() - reference)[real].abs().max().item()
    assert diff < 0.1 * scale, (
        f"{case.label}: bf16 weights change the output by {diff:.3g} (scale {scale:.3g})"
    )


@pytest.mark.parametrize("encoder", testing.parts("encoder"))
@pytest.mark.parametrize("attention", testing.parts("attention"))
def test_attention_with_encoder_under_bf16(attention, encoder):
    _check(encoder, attention, testing.DEFAULT_HEAD, "attention")


@pytest.mark.parametrize("head", testing.parts("head"))
def test_head_under_bf16(head):
    _check(testing.DEFAULT_ENCODER, "sdpa", head, "head")
