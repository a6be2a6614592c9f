"""Built-in encoder architectures. Each takes any attention part."""
from zoo.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    here = "zoo.plugins.encoders"
    register("transformer", f"{here}.transformer:TutorialTransformer",
             description="The tutorial's post-LN Transformer: ReLU feed-forward, learned positions")
    register("bert", f"{here}.bert:BertEncoder",
             description="BERT: post-LN, GELU, token types; Hugging Face BERT checkpoints map onto it")
    register("prenorm", f"{here}.prenorm:PreNormTransformer",
             description="Modern pre-norm block: RMSNorm, SwiGLU feed-forward, rotary positions")
