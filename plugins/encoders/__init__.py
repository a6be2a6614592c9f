"""Built-in encoder architectures (each takes any attention part), and the importers that map Hugging Face
checkpoints onto them, keyed by the checkpoint's model_type."""

from zoo.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    here = "zoo.plugins.encoders"
    register(
        "transformer",
        f"{here}.transformer:TutorialTransformer",
        capabilities={"positions": "learned"},
        description="The tutorial's post-LN Transformer: ReLU feed-forward, learned positions",
    )
    register(
        "bert",
        f"{here}.bert:BertEncoder",
        capabilities={"positions": "learned", "hf_export": f"{here}.bert_export:export_bert"},
        description="BERT: post-LN, GELU, token types; Hugging Face BERT checkpoints map onto it",
    )
    register(
        "deberta",
        f"{here}.deberta:DebertaEncoder",
        capabilities={"positions": "relative", "hf_export": f"{here}.bert_export:export_deberta"},
        description="DeBERTa-v2/v3: BERT layers sharing one relative position table with a 'relative' "
        "attention (disentangled); Hugging Face deberta-v2 checkpoints map onto it",
    )
    register(
        "modernbert",
        f"{here}.modernbert:ModernBertEncoder",
        capabilities={"positions": "rotary", "hf_export": f"{here}.modernbert_export:export_modernbert"},
        description="ModernBERT: pre-norm without biases, GeGLU, rotary (global/local bases), a global layer "
        "every N and sliding-window layers between",
    )
    register(
        "prenorm",
        f"{here}.prenorm:PreNormTransformer",
        capabilities={"positions": "rotary"},
        description="Modern pre-norm block: RMSNorm, SwiGLU feed-forward, rotary positions",
    )


@hookimpl
def register_importers(register):
    here = "zoo.plugins.encoders"
    register(
        "bert",
        f"{here}.bert_import:import_bert",
        description="Hugging Face BERT checkpoints (BertModel, BertFor*, sentence-transformers) -> bert",
    )
    for model_type, family in (
        ("roberta", "RoBERTa"),
        ("xlm-roberta", "XLM-RoBERTa"),
        ("camembert", "CamemBERT"),
    ):
        register(
            model_type,
            f"{here}.roberta_import:import_roberta",
            description=f"{family} checkpoints -> bert (positions from padding_idx + 1, one token type)",
        )
    register(
        "distilbert",
        f"{here}.distilbert_import:import_distilbert",
        description="DistilBERT checkpoints -> bert (no token types; relu pooler for its classifier)",
    )
    register(
        "electra",
        f"{here}.electra_import:import_electra",
        description="ELECTRA discriminators -> bert (embedding_size projection; gelu pooler for its classifier)",
    )
    register(
        "deberta-v2",
        f"{here}.deberta_import:import_deberta_v2",
        description="DeBERTa-v2 and v3 checkpoints -> deberta encoder with disentangled attention "
        "(c2p/p2c over bucketed relative positions)",
    )
    register(
        "modernbert",
        f"{here}.modernbert_import:import_modernbert",
        description="ModernBERT checkpoints -> modernbert encoder (fused qkv split; cls or mean pooling head "
        "with its norm)",
    )
