"""Built-in attention variants. Factories are lazy import paths, so listing parts imports no torch."""

from zoo.hookspecs import hookimpl


@hookimpl
def register_attention(register):
    here = "zoo.plugins.attention"
    register(
        "mha",
        f"{here}.mha:ExplicitAttention",
        capabilities={"rotary": True},
        description="Reference multi-head attention: explicit softmax(QKᵀ/√d)·V, as in the tutorial",
    )
    register(
        "sdpa",
        f"{here}.sdpa:SDPAttention",
        capabilities={"rotary": True},
        description="Multi-head attention through torch's fused scaled_dot_product_attention (default)",
    )
    register(
        "gqa",
        f"{here}.sdpa:GroupedQueryAttention",
        capabilities={"rotary": True},
        description="Grouped-query attention: num_kv_heads key/value heads (default ~num_heads/4) "
        "shared by query groups",
    )
    register(
        "mqa",
        f"{here}.sdpa:MultiQueryAttention",
        capabilities={"rotary": True},
        description="Multi-query attention: one key/value head shared by all query heads",
    )
    register(
        "linear",
        f"{here}.linear:LinearAttention",
        description="Kernelised linear attention, elu(x)+1 feature map: O(S) memory in sequence length",
    )
    register(
        "local",
        f"{here}.local:LocalAttention",
        capabilities={"rotary": True},
        description="Sliding-window attention: each token sees `window` positions to either side",
    )
    register(
        "alibi",
        f"{here}.alibi:ALiBiAttention",
        capabilities={"positions": True},
        description="ALiBi: linear distance biases per head, no position embeddings needed",
    )
    register(
        "disentangled",
        f"{here}.disentangled:DisentangledAttention",
        capabilities={"positions": True, "relative": True},
        description="DeBERTa's disentangled attention: content and bucketed relative-position terms "
        "(c2p, p2c); shares one table across layers under the deberta encoder",
    )
