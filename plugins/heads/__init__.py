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
        capabilities={"hf_export": f"{here}.hf_export:export_classification"},
    )
    register(
        "multilabel",
        f"{here}.classification:MultiLabelHead",
        task="multilabel",
        description="Multi-label classification (sigmoid per label, binary cross-entropy)",
        capabilities={"hf_export": f"{here}.hf_export:export_multilabel"},
    )
    register(
        "regression",
        f"{here}.regression:RegressionHead",
        task="regression",
        description="Regression of num_labels real values (mean squared error)",
        capabilities={"hf_export": f"{here}.hf_export:export_regression"},
    )
    register(
        "token-cls",
        f"{here}.token:TokenClassificationHead",
        task="token-classification",
        description="Per-token classification (tagging, NER); padding and -100 labels ignored",
        capabilities={"hf_export": f"{here}.hf_export:export_token_classification"},
    )
    register(
        "embedding",
        f"{here}.embedding:EmbeddingHead",
        task="embedding",
        description="Sentence embeddings: pooling mean|cls|max|weighted-mean|last, optional dense and "
        "L2 normalisation; in-batch-negatives ranking loss",
        capabilities={"hf_export": f"{here}.hf_export:export_embedding"},
    )
    register(
        "rerank",
        f"{here}.rerank:RerankHead",
        task="rerank",
        description="Cross-encoder reranking: one relevance score per (query, text) pair (sigmoid, "
        "binary cross-entropy); pooling cls|mean, optional pooler",
        capabilities={"hf_export": f"{here}.hf_export:export_rerank"},
    )
    register(
        "mlm",
        f"{here}.mlm:MLMHead",
        task="mlm",
        description="Masked language modelling (pre-training): dense+GELU+LayerNorm, decoder tied to the "
        "word embeddings; loss on masked tokens only",
        capabilities={"torchscript": "trace", "hf_export": f"{here}.hf_export:export_mlm"},
    )
