#!/usr/bin/env bash
# The main job, on the CPU: generate the shapes dataset (COCO + ADE20K
# layouts), then `mim train` and `mim test` a small VRWKV-Adapter UperNet
# (mmsegmentation) and a small VRWKV-Adapter Mask R-CNN (mmdet) on it, saving
# visualised predictions as PNGs and printing mIoU and COCO mAP.
# The Mask R-CNN starts from the UperNet's backbone (same architecture), as
# the paper's detectors start from ImageNet weights.
#   [MODEL=vrwkv6|mae] bash tools/run_demo.sh [WORK_DIR]
# MODEL: vrwkv (default) or vrwkv6, the backbone of the demo configs
# configs/demo/{upernet,mask_rcnn}_${MODEL}_demo_shapes.py; or mae: MAE
# pre-training of the UperNet's encoder on the images without labels, in
# both sparse-input modes (configs/demo/mae_vrwkv_demo_shapes.py), with
# reconstruction pictures, then the UperNet trained briefly from each MAE
# checkpoint and from scratch (configs/demo/upernet_vrwkv_mae_demo_shapes.py).
# WORK_DIR defaults to work_dirs/demo (vrwkv) or work_dirs/demo_${MODEL}.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-vrwkv}
case "$MODEL" in
  vrwkv) DEFAULT_WORK=work_dirs/demo ;;
  vrwkv6) DEFAULT_WORK=work_dirs/demo_vrwkv6 ;;
  mae) DEFAULT_WORK=work_dirs/demo_mae ;;
  *) echo "MODEL=$MODEL is not one of: vrwkv, vrwkv6, mae" >&2; exit 2 ;;
esac
WORK=${1:-$DEFAULT_WORK}
DATA=data/shapes
PY=${PYTHON:-python}
MIM=${MIM:-mim}

if [ ! -f "$DATA/coco/annotations/instances_val2017.json" ]; then
  "$PY" tools/make_demo_data.py "$DATA" --train 200 --val 40
fi

run() {  # package config name checkpoint [train --cfg-options...]
  local package=$1 config=$2 name=$3 ckpt=$4
  shift 4
  "$MIM" train "$package" "$config" --gpus 0 --work-dir "$WORK/$name" "$@"
  "$MIM" test "$package" "$config" --gpus 0 --work-dir "$WORK/$name" \
    --checkpoint "$WORK/$name/$ckpt" --show-dir "$(realpath -m "$WORK/$name/vis")" \
    2>&1 | tee "$WORK/$name/test.log"
}

mkdir -p "$WORK"
if [ "$MODEL" = mae ]; then
  MAE=configs/demo/mae_vrwkv_demo_shapes.py
  SEG=configs/demo/upernet_vrwkv_mae_demo_shapes.py
  VAL=$DATA/ade/ADEChallengeData2016/images/validation
  for mode in grid official; do
    "$MIM" train mmpretrain "$MAE" --gpus 0 --work-dir "$WORK/mae_$mode" \
      --cfg-options "model.backbone.mask_mode=$mode" \
      "model.neck.mask_mode=$mode"
    "$PY" tools/mae_reconstruct.py "$MAE" "$WORK/mae_$mode/epoch_40.pth" \
      "$VAL" --out-dir "$WORK/mae_$mode/reconstruction" --num 4 \
      --cfg-options "model.backbone.mask_mode=$mode" \
      "model.neck.mask_mode=$mode"
    run mmsegmentation "$SEG" "upernet_mae_$mode" iter_200.pth \
      --cfg-options \
      "model.backbone.init_cfg.checkpoint=$WORK/mae_$mode/epoch_40.pth"
  done
  run mmsegmentation "$SEG" upernet_scratch iter_200.pth \
    --cfg-options model.backbone.init_cfg=None
  echo
  echo "== UperNet, 200 iterations (validation split, 40 images) =="
  for name in upernet_scratch upernet_mae_grid upernet_mae_official; do
    echo "$name: $(grep -h -E "mIoU:" "$WORK/$name/test.log" \
      | sed -E 's/.*(Epoch|Iter)\(test\) *\[[0-9]+\/[0-9]+\] *//')"
  done
  echo "reconstructions: $WORK/mae_{grid,official}/reconstruction/"
  exit 0
fi
run mmsegmentation "configs/demo/upernet_${MODEL}_demo_shapes.py" upernet \
  iter_400.pth
run mmdet "configs/demo/mask_rcnn_${MODEL}_demo_shapes.py" mask_rcnn \
  epoch_12.pth \
  --cfg-options model.backbone.init_cfg.type=Pretrained \
  "model.backbone.init_cfg.checkpoint=$WORK/upernet/iter_400.pth" \
  model.backbone.init_cfg.prefix=backbone.

echo
echo "== results (validation split, 40 images) =="
grep -h -E "mIoU:|coco/bbox_mAP:" "$WORK"/upernet/test.log \
  "$WORK"/mask_rcnn/test.log \
  | sed -E 's/.*(Epoch|Iter)\(test\) *\[[0-9]+\/[0-9]+\] *//'
echo "visualisations: $(find "$WORK" -path '*/vis/*' -name '*.png' | wc -l)"\
  "PNGs under $WORK/*/vis"
