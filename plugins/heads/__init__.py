"""Built-in task heads. Each owns its loss and names the task it serves (task=...)."""

from zoo.hookspecs import hookimpl


@hookimpl
def register_heads(register):
    here = "zoo.plugins.heads"
    register(
        "cls",
        f"{here}.classification:ClassificationHead",
        task="classification",
        description="Sequence classification (softmax, cross-entropy); pooling cls|mean",
    )
    register(
        "multilabel",
        f"{here}.classification:MultiLabelHead",
        task="multilabel",
        description="Multi-label classification (sigmoid per label, binary cross-entropy)",
    )
    register(
        "regression",
        f"{here}.regression:RegressionHead",
        task="regression",
        description="Regression of num_labels real values (mean squared error)",
    )
    register(
        "token-cls",
        f"{here}.token:TokenClassificationHead",
        task="token-classification",
        description="Per-token classification (tagging, NER); padding and -100 labels ignored",
    )
    register(
        "embedding",
        f"{here}.embedding:EmbeddingHead",
        task="embedding",
        description="Sentence embeddings: pooling mean|cls|max|weighted-mean|last, optional dense and "
        "L2 normalisation; in-batch-negatives ranking loss",
    )
    register(
        "rerank",
        f"{here}.rerank:RerankHead",
        task="rerank",
        description="Cross-encoder reranking: one relevance score per (query, text) pair (sigmoid, "
        "binary cross-entropy); pooling cls|mean, optional pooler",
    )
    register(
        "mlm",
        f"{here}.mlm:MLMHead",
        task="mlm",
        description="Masked language modelling (pre-training): dense+GELU+LayerNorm, decoder tied to the "
        "word embeddings; loss on masked tokens only",
        capabilities={"torchscript": "trace"},
    )
