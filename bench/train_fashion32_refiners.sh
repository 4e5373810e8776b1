#!/bin/sh
# Train the shipped fashion32 ReStyle encoders and HFGI refiners (equal budgets per pair),
# then export the small weights-only files into lsap/assets. Resumable: a second run of one
# step continues from its last.ckpt. Run from the repository root; each job is niced.
# The HFGI refiners train from scratch (configs/hfgi_fashion32.yaml itself starts from the
# shipped refiner, so that its predict refines with it).
#   sh bench/train_fashion32_refiners.sh restyle      # both ReStyle encoders, in parallel
#   sh bench/train_fashion32_refiners.sh hfgi         # both HFGI refiners, in parallel
set -e
export OMP_NUM_THREADS=1
resume() { [ -f "$1" ] && echo "--ckpt_path $1" || true; }
case "$1" in
restyle)
  for v in e4e lsap; do
    nice -n 10 lsap fit --config configs/restyle_fashion32_$v.yaml \
      $(resume lightning_logs/restyle_fashion32_$v/checkpoints/last.ckpt) > lightning_logs/restyle_fashion32_$v.log 2>&1 &
  done
  wait
  for v in e4e lsap; do
    python bench/export_fashion32_restyle.py lightning_logs/restyle_fashion32_$v/checkpoints/last.ckpt \
      lsap/assets/encoders/fashion32_restyle_$v.pt
  done ;;
hfgi)
  for v in e4e lsap; do
    nice -n 10 lsap fit --config configs/hfgi_fashion32.yaml --model.init_args.embedding fashion32_$v \
      --model.init_args.refiner_checkpoint null \
      --trainer.default_root_dir lightning_logs/hfgi_fashion32_$v --trainer.logger.init_args.name hfgi_fashion32_$v \
      --trainer.callbacks.init_args.dirpath lightning_logs/hfgi_fashion32_$v/checkpoints \
      $(resume lightning_logs/hfgi_fashion32_$v/checkpoints/last.ckpt) > lightning_logs/hfgi_fashion32_$v.log 2>&1 &
  done
  wait
  for v in e4e lsap; do
    python bench/export_fashion32_hfgi.py lightning_logs/hfgi_fashion32_$v/checkpoints/last.ckpt \
      lsap/assets/refine/hfgi_fashion32_$v.pt
  done ;;
*) echo "usage: $0 restyle|hfgi" >&2; exit 2 ;;
esac
