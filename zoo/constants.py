"""Names that more than one layer must agree on: the files of model, export and training directories,
and the target value that marks a position without a label. One definition each, imported everywhere."""

VERSION = "0.1.0"  # zoo's version (zoo.__version__), recorded in every config.json and export manifest

# a model directory
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"
# an adapter directory: config.json and tokenizer.json as above, the adapter and head weights, and the base
ADAPTER_CONFIG_NAME = "adapter.json"
ADAPTER_WEIGHTS_NAME = "adapter.safetensors"
# a fine-tuning output directory, beside the model files
STATE_NAME = "trainer_state.safetensors"
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
# an export directory (TOKENIZER_NAME too)
MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"
OPTIMIZED_NAME = "model.optimized.onnx"
INT8_NAME = "model.int8.onnx"
TORCHSCRIPT_NAME = "model.pt"

IGNORE_INDEX = -100  # a target position without a label (padding, a word's later pieces); losses skip it
# --long-text: cut texts longer than the model, or read them in windows whose outputs are averaged (window)
# or max-pooled (window-max) per text (zoo.windows)
LONG_TEXT_MODES = ("truncate", "window", "window-max")
