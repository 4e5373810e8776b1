#!/bin/bash
# The README's editing grid and metrics.md: LSAP_O (200 steps) inverts 16 shipped real
# Fashion-MNIST test images into the shipped fashion32 generator, `lsap edit` moves them
# along the shipped class directions, and `lsap evaluate` scores the inversions. About a
# minute on 2 CPU cores.
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
c["model"]["init_args"].update(num_steps=200)
c["data"]["init_args"]["limit"] = 16
yaml.safe_dump(c, open("outputs/example.yaml", "w"), sort_keys=False)
CODE
"$PY" -m lsap predict --config outputs/example.yaml
"$PY" -m lsap edit outputs/example --direction sneaker_to_boot pullover_to_coat tshirt_to_shirt --strengths -3 0 3 \
    --output outputs/example_edit
"$PY" -m lsap evaluate outputs/example --real lsap/assets/fashion_mnist_test --real_fit pad --generator fashion32
"$PY" - <<'CODE'
from PIL import Image
# A sneaker, a pullover and a T-shirt: each grid has one row per direction.
grids = [Image.open(f"outputs/example_edit/grids/{n}.png") for n in ("0503_7", "0388_2", "0035_0")]
canvas = Image.new("RGB", (sum(g.width for g in grids) + 10 * (len(grids) - 1), max(g.height for g in grids)), "white")
x = 0
for g in grids:
    canvas.paste(g, (x, 0))
    x += g.width + 10
canvas.resize((canvas.width * 3, canvas.height * 3), Image.NEAREST).save("docs/edit_grid_example.png")
CODE
cat outputs/example/metrics.md
