"""zoo-sigmoid-attention: zoo plugin module (the `zoo` entry point names it). It imports no torch: the part's
factory is registered as a lazy "module:attr" path and imported the first time a model uses it."""

from zoo import hookimpl


@hookimpl
def register_attention(register):
    register(
        "sigmoid",
        "zoo_sigmoid_attention.attention:SigmoidAttention",
        capabilities={"rotary": True},
        description="Sigmoid attention: σ(QKᵀ/√d − log n)·V, no softmax normalisation (Ramapuram et al. 2024)",
    )
