"""zoo-attnpool-head: zoo plugin module (the `zoo` entry point names it). It imports no torch: the head is
registered as a lazy "module:attr" path and imported the first time a model uses it."""

from zoo import hookimpl


@hookimpl
def register_heads(register):
    # task="classification": labels are (B,) class indices and the logits (B, num_labels), scored by accuracy
    # and macro-F1. capabilities torchscript="script": the head compiles with torch.jit.script, and the
    # conformance kit fails (instead of warning) if a change ever breaks that.
    register(
        "attnpool",
        "zoo_attnpool_head.head:AttentionPoolingHead",
        task="classification",
        capabilities={"torchscript": "script"},
        description="Classification over attention-pooled tokens: softmax of a learned score per real token",
    )
