"""Built-in tasks. Each says what a label is, how it is batched, scored, printed and checked after int8.
Factories are lazy import paths: listing parts imports no task module (and task modules import no torch)."""

from zoo.hookspecs import hookimpl


@hookimpl
def register_tasks(register):
    here = "zoo.plugins.tasks"
    register(
        "classification",
        f"{here}.classification:Classification",
        description="One label per text (a string or integer); accuracy, macro-F1, confusion matrix",
    )
    register(
        "multilabel",
        f"{here}.multilabel:MultiLabel",
        description="Any number of labels per text (a list, or 'a|b'); micro/macro-F1, exact match",
    )
    register(
        "regression",
        f"{here}.regression:Regression",
        description="One or more numbers per text; MSE, RMSE, MAE, R², Pearson",
    )
    register(
        "token-classification",
        f"{here}.token:TokenClassification",
        description="One label per word (tagging, NER); token-level accuracy and macro-F1",
    )
    register(
        "embedding",
        f"{here}.embedding:Embedding",
        description="One vector per text (sentence embeddings); retrieval metrics mrr@10, ndcg@10, recall@k, map@100",
    )
    register(
        "rerank",
        f"{here}.rerank:Rerank",
        description="One relevance score per (query, text) pair (cross-encoder); map, mrr@10, ndcg@10 per query",
    )
    register(
        "mlm",
        f"{here}.mlm:MaskedLM",
        description="Masked language modelling (pre-training, `zoo pretrain`); loss and accuracy on masked tokens",
    )
