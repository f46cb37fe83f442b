#!/usr/bin/env bash
# Runs every CIFAR-10 preset on the real 5k subset (../shared/data/cifar10-subset),
# scaled down where the full recipe does not fit a 2-core CPU, then writes
# experiments/RESULTS.md. Each scaled run says so in its `note` tag.
set -uo pipefail
cd "$(dirname "$0")/.."
SUBSET=${SUBSET:-$(cd .. && pwd)/shared/data/cifar10-subset}
DATA=(dataset.data_dir="$SUBSET" dataset.download=false)

run() { python -m cifarlab "$@" "${DATA[@]}" || echo "run failed: $*" >&2; }

run experiment=delta_cifar10 "+tracking.tags.note='full recipe, no gradient training'"
run experiment=mlp_cifar10 "+tracking.tags.note='full recipe on 4.6k training images instead of 45k'"
run experiment=tf_cifar_100ep "+tracking.tags.note='full 100 epochs, but 9 steps of 512 per epoch on the subset instead of 98'"
run experiment=cnn_bn_nadam trainer.epochs=40 "+tracking.tags.note='40 of up to 200 epochs, 4.6k images: too short and too little data for 89%'"
run experiment=cnn_deep_cifar10 trainer.epochs=15 "+tracking.tags.note='15 epochs on 4.6k images; no published number'"
run experiment=cnn_basic_two_stage trainer.epochs=10 "+tracking.tags.note='10+10 of 50+50 epochs on 4.6k images; no published number'"
run experiment=resnet20_cifar10 trainer.epochs=30 optimizer.schedule.step_epochs=20 "+tracking.tags.note='30 of 200 epochs on 4.6k images: far from 92.2%'"
run experiment=resnet9_cifar10 model.width=0.25 trainer.batch_size=128 optimizer.lr=0.1 "+tracking.tags.note='width 0.25, batch 128 at lr 0.1 (batch 512 gives the 4.6k-image subset only 9 steps an epoch); the 94% needs 50k images and a GPU'"
run experiment=cifar10_fast_cpu "+tracking.tags.note='full recipe: 300 s training budget on 2 cores'"
python -m cifarlab results output=experiments/RESULTS.md
