"""configs/demo.yaml: the edit table follows the classes, and the config runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from lsap.callbacks import ReconstructionGridCallback
from lsap.data.fashion_mnist import CLASS_NAMES
from lsap.editing.edits import direction_names

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"

FOOTWEAR = {"Sneaker": {"sneaker_to_boot"}, "Ankle boot": {"boot_to_sneaker"}}
TOPS = {"T-shirt/top": {"tshirt_to_shirt"}, "Shirt": {"shirt_to_tshirt"}, "Pullover": {"pullover_to_coat"},
        "Coat": {"coat_to_pullover"}}


def demo_grid_callback() -> ReconstructionGridCallback:
    callbacks = yaml.safe_load(DEMO.read_text())["trainer"]["callbacks"]
    (args,) = [c["init_args"] for c in callbacks if c["class_path"] == "lsap.callbacks.ReconstructionGridCallback"]
    return ReconstructionGridCallback(**args)


def test_the_demo_edits_each_class_along_a_direction_of_its_own() -> None:
    callback = demo_grid_callback()
    assert callback.columns == "one_per_class" and callback.edit_unit == "std"
    assert callback.class_names == list(CLASS_NAMES)
    for label, name in enumerate(CLASS_NAMES):
        expected = {**FOOTWEAR, **TOPS}.get(name, {None})
        assert callback.edit_for_class(label) in expected, (label, name)
    shipped = set(direction_names())
    assert {callback.edit_for_class(c) for c in range(10)} - {None} <= shipped


@pytest.mark.slow
def test_the_demo_config_runs_two_steps_and_writes_the_labelled_picture(tmp_path: Path) -> None:
    root = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSAP_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--config", str(DEMO), "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
            "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--data.init_args.num_train", "16",
            "--model.init_args.anchor_samples", "300"]
    proc = subprocess.run([sys.executable, "-m", "lsap", "fit", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    png = np.asarray(Image.open(root / "demo" / "version_0" / "checkpoints" / "reconstructions.png"))
    # 10 classes x 3 rows of 32 px images enlarged 4 times (130 px with padding), then a
    # label strip of 3 lines of 12 px.
    assert png.shape == (3 * 130 + 2 + 3 * 12 + 2, 10 * 130 + 2, 3)
    bag_edit = png[2 + 2 * 130:2 + 2 * 130 + 128, 2 + 8 * 130:2 + 8 * 130 + 128]
    assert (bag_edit == 0).all()  # the bag has no direction: a black tile
    boot_recon = png[132:260, 2 + 9 * 130:2 + 9 * 130 + 128].astype(int)
    boot_edit = png[262:390, 2 + 9 * 130:2 + 9 * 130 + 128].astype(int)
    assert np.abs(boot_edit - boot_recon).max() > 0  # the ankle boot is edited
