"""Built-in task heads. Each owns its loss; capabilities['labels'] names the label format it expects."""
from zoo.hookspecs import hookimpl


@hookimpl
def register_heads(register):
    here = "zoo.plugins.heads"
    register("cls", f"{here}.classification:ClassificationHead", capabilities={"labels": "class"},
             description="Sequence classification (softmax, cross-entropy); pooling cls|mean")
    register("multilabel", f"{here}.classification:MultiLabelHead", capabilities={"labels": "multi"},
             description="Multi-label classification (sigmoid per label, binary cross-entropy)")
    register("regression", f"{here}.regression:RegressionHead", capabilities={"labels": "float"},
             description="Regression of num_labels real values (mean squared error)")
    register("token-cls", f"{here}.token:TokenClassificationHead", capabilities={"labels": "token"},
             description="Per-token classification (tagging, NER); padding and -100 labels ignored")
