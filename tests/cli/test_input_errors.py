"""The rows of the one-line error table owned by the CLI and the data modules: each bad input
ends with ``lsap: error: <cause>`` naming what is wrong, and exit status 2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lsap.cli import main
from lsap.data import FashionSamplesDataModule, FashionSamplesDataset
from lsap.data.fashion_samples import SHIPPED_SAMPLES_DIR
from lsap.errors import BadFileError, BadValueError, MissingInputError, OutputError
from lsap.model import save_generator

from conftest import small_source

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lsap: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def _samples(tmp_path: Path, count: int = 2) -> Path:
    root = tmp_path / "samples"
    root.mkdir()
    for name in sorted(os.listdir(SHIPPED_SAMPLES_DIR))[:count]:
        shutil.copy(Path(SHIPPED_SAMPLES_DIR) / name, root / name)
    return root


def test_an_empty_png_is_a_bad_file_naming_it(tmp_path):
    root = _samples(tmp_path)
    (root / "0999_3.png").write_bytes(b"")
    with pytest.raises(BadFileError, match="0999_3.png"):
        FashionSamplesDataset(root)


def test_a_folder_without_png_names_the_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(MissingInputError, match=f"no PNG images in '{tmp_path}'"):
        FashionSamplesDataset(tmp_path)


def test_a_wrong_size_png_is_a_bad_file(tmp_path):
    root = _samples(tmp_path)
    Image.new("L", (30, 28)).save(root / "0998_1.png")
    with pytest.raises(BadFileError, match="0998_1.png.*28 x 28"):
        FashionSamplesDataset(root)


def test_a_zero_batch_size_is_a_bad_value():
    with pytest.raises(BadValueError, match="batch sizes must be >= 1"):
        FashionSamplesDataModule(batch_size=0)


@pytest.mark.parametrize("case", ["empty_png", "no_png", "batch_size_0"])
def test_predict_with_bad_data_ends_with_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["lsap"])
    args = ["predict", "--config", str(CONFIGS / "invert_fashion32.yaml"),
            "--trainer.default_root_dir", str(tmp_path / "run")]
    if case == "empty_png":
        root = _samples(tmp_path)
        (root / "0999_3.png").write_bytes(b"")
        args += ["--data.init_args.root", str(root)]
        expected = "0999_3.png"
    elif case == "no_png":
        (tmp_path / "empty").mkdir()
        args += ["--data.init_args.root", str(tmp_path / "empty")]
        expected = "no PNG images"
    else:
        args += ["--data.init_args.val_batch_size", "0"]
        expected = "batch sizes must be >= 1"
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert expected in _one_error_line(capsys)


def test_convert_to_a_read_only_folder_is_an_output_error_naming_the_file(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    src = save_generator(small_source().build(), tmp_path / "g.pt")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["convert", str(src), str(locked / "g.safetensors")])
        assert exc.value.code == 2
        assert str(locked / "g.safetensors") in _one_error_line(capsys)
    finally:
        locked.chmod(0o700)


def test_convert_to_a_missing_folder_is_an_output_error(tmp_path):
    from lsap.convert import convert

    src = save_generator(small_source().build(), tmp_path / "g.pt")
    with pytest.raises(OutputError, match="does not exist"):
        convert(str(src), str(tmp_path / "nowhere" / "g.safetensors"))


def test_convert_to_a_full_disk_is_an_output_error_naming_the_file(tmp_path, capsys, monkeypatch):
    import errno

    src = save_generator(small_source().build(), tmp_path / "g.pt")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lsap.io.os.replace", disk_full)  # the last step of every atomic write
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(src), str(tmp_path / "full.safetensors")])
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert "full.safetensors" in line and "No space left" in line
    assert not (tmp_path / "full.safetensors").exists()


def test_a_config_typo_names_the_closest_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["lsap"])
    config = (CONFIGS / "demo.yaml").read_text()
    assert "nscd_weight:" in config
    typo = tmp_path / "typo.yaml"
    typo.write_text(config.replace("nscd_weight:", "nscd_wieght:"))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(typo)])
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert "'nscd_wieght'" in line and "did you mean 'nscd_weight'?" in line
    assert "--print_config" in line and "lsap fit --help" in line
    assert "Given value" not in line and "usage" not in line


def test_a_missing_config_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["lsap"])
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--config", str(tmp_path / "nowhere.yaml")])
    assert exc.value.code == 2
    assert f"'{tmp_path / 'nowhere.yaml'}' does not exist" in _one_error_line(capsys)


def _write_decompression_bomb(path: Path) -> None:
    """A tiny PNG whose header claims 40000 x 40000 pixels (PIL refuses to open it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("option, value", [("batch_size", "0"), ("batch_size", "-3"), ("num_samples", "0"),
                                           ("num_samples", "1"), ("num_components", "0")])
def test_ganspace_with_a_non_positive_count_ends_with_one_line(option, value, tmp_path, capsys):
    source = save_generator(small_source().build(), tmp_path / "g.pt")
    with pytest.raises(SystemExit) as exc:  # batch_size 0 used to loop for ever on an empty batch
        main(["directions", "ganspace", str(source), str(tmp_path / "pca.pt"),
              "--num_samples", "64", f"--{option}", value])
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert option in line and value in line
    assert not (tmp_path / "pca.pt").exists()


def test_ganspace_checks_its_counts_before_sampling(monkeypatch):
    from lsap.editing import ganspace

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before checking the options")

    monkeypatch.setattr(ganspace, "sample_z", no_sampling)
    generator = small_source().build()
    for kwargs in (dict(batch_size=0), dict(num_samples=1), dict(num_components=0), dict(method="svd")):
        with pytest.raises(BadValueError):
            ganspace.compute_ganspace(generator, **{"num_samples": 16, **kwargs})


def test_fid_reports_a_folder_of_unreadable_images_before_looking_for_inception(tmp_path, capsys, monkeypatch):
    real, fake = _samples(tmp_path, 1), tmp_path / "fake"
    shutil.copytree(real, fake)
    shutil.copy(Path(SHIPPED_SAMPLES_DIR) / sorted(os.listdir(SHIPPED_SAMPLES_DIR))[1], fake)
    _write_decompression_bomb(real / "0999_3.png")

    def no_inception(*args, **kwargs):
        raise AssertionError("looked for the Inception weights before checking the images")

    monkeypatch.setattr("lsap.evaluation.fid.load_feature_extractor", no_inception)
    with pytest.raises(SystemExit) as exc:
        main(["fid", str(real), str(fake), "--inception", str(tmp_path / "no_inception.pt")])
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert "at least 2 readable real images" in line and "1 unreadable" in line


def test_fid_skips_and_names_a_decompression_bomb(tmp_path, capsys):
    import json

    real = _samples(tmp_path, 3)
    fake = tmp_path / "fake"
    shutil.copytree(real, fake)
    _write_decompression_bomb(fake / "0999_3.png")
    main(["fid", str(real), str(fake), "--classifier", "fashion32", "--batch_size", "2"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "0999_3.png" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["num_real"] == 3 and result["num_fake"] == 3 and result["num_unreadable"] == 1
    assert result["unreadable"] == [str(fake / "0999_3.png")]
