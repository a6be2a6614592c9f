"""zoo-ordinal: zoo plugin module (the `zoo` entry point names it). It imports no torch: the task and the
head are registered as lazy "module:attr" paths and imported the first time a model uses them."""

from zoo import hookimpl


@hookimpl
def register_tasks(register):
    register(
        "ordinal",
        "zoo_ordinal.task:Ordinal",
        description="Ordered labels (1-5 stars, bad < ok < good); MAE, quadratic-weighted kappa",
    )


@hookimpl
def register_heads(register):
    register(
        "ordinal",
        "zoo_ordinal.head:OrdinalHead",
        task="ordinal",
        description="Cumulative link: one score against K-1 ordered thresholds (binary cross-entropy)",
    )
