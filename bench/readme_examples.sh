#!/bin/bash
# The README's editing grid and metrics.md: LSAP_O (200 steps) inverts 16 shipped real
# Fashion-MNIST test images with the generator-free demo generator (seeded random, 32 px),
# then GANSpace directions, `lsap edit` and `lsap evaluate`. About a minute on 2 CPU cores.
#   bash bench/readme_examples.sh            (PYTHON=.venv/bin/python to pick an interpreter)
set -ex
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
rm -rf outputs/example outputs/example_edit
mkdir -p outputs docs
"$PY" - <<'CODE'
import yaml
c = yaml.safe_load(open("configs/optimize_fashion32.yaml"))
c["trainer"]["default_root_dir"] = "outputs/example"
c["trainer"]["callbacks"][0]["init_args"]["output_dir"] = "outputs/example"
c["model"]["init_args"]["generator"] = {"seed": 0, "resolution": 32, "mapping_layers": 2, "channel_base": 1024,
                                        "channel_max": 64}
c["model"]["init_args"].update(num_steps=200, anchor_samples=5000, w_std_samples=5000)
c["data"]["init_args"]["limit"] = 16
yaml.safe_dump(c, open("outputs/example.yaml", "w"), sort_keys=False)
CODE
"$PY" -m lsap predict --config outputs/example.yaml
"$PY" -m lsap directions ganspace outputs/example/config.yaml outputs/example/pca.pt --num_samples 20000 --num_components 10
"$PY" -m lsap edit outputs/example --direction "outputs/example/pca.pt#0" "outputs/example/pca.pt#1" --strengths -3 0 3 \
    --output outputs/example_edit
"$PY" -m lsap evaluate outputs/example --real lsap/assets/fashion_mnist_test --real_fit pad \
    --generator outputs/example/config.yaml --nscd_samples 5000 --pca_samples 500
"$PY" - <<'CODE'
from PIL import Image
grids = [Image.open(f"outputs/example_edit/grids/{n}.png") for n in ("0035_0", "0101_6", "0153_4")]
canvas = Image.new("RGB", (sum(g.width for g in grids) + 10 * (len(grids) - 1), max(g.height for g in grids)), "white")
x = 0
for g in grids:
    canvas.paste(g, (x, 0))
    x += g.width + 10
canvas.resize((canvas.width * 3, canvas.height * 3), Image.NEAREST).save("docs/edit_grid_example.png")
CODE
