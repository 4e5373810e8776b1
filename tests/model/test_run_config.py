"""A results folder's config.yaml is data: hostile components are refused in one line and never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import small_source
from lsap.errors import BadFileError, BadValueError, InputError, MissingInputError, UnsafeFileError
from lsap.model.run_config import check_components, module_from_run_config, read_run_config, resolve_component
from lsap.model.source import GeneratorSource, generator_from_spec

SIDE_EFFECT_MODULE = "lsap_test_side_effect_module"


def hostile_components(marker: Path) -> dict[str, dict]:
    """Components that would create ``marker`` if anything imported or called them."""
    return {
        "os.system": {"class_path": "os.system", "init_args": {"command": f"touch '{marker}'"}},
        "subprocess.Popen": {"class_path": "subprocess.Popen", "init_args": {"args": ["touch", str(marker)]}},
        "builtins.eval": {"class_path": "builtins.eval", "init_args": {"source": f"open({str(marker)!r}, 'w')"}},
        "side-effect import": {"class_path": f"{SIDE_EFFECT_MODULE}.Thing", "init_args": {}},
    }


@pytest.fixture
def side_effect_module(tmp_path: Path, monkeypatch) -> Path:
    """A module on sys.path (for this test only) that writes a marker when imported."""
    marker = tmp_path / "marker"
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / f"{SIDE_EFFECT_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    return marker


def lsap_o_settings() -> dict:
    return {"generator": small_source(resolution=16).as_dict(), "lpips": None, "num_steps": 2, "lambda_lpips": 0.0,
            "lambda_mse": 1.0, "anchor_samples": 100, "w_std_samples": 100, "loss_resolution": 16}


def write_config(folder: Path, model: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model}))
    return folder


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text.strip() and text.strip()
    return text


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "side-effect import"])
@pytest.mark.parametrize("where", ["model", "lpips", "generator"])
def test_every_reader_refuses_hostile_components_and_nothing_runs(tmp_path, side_effect_module, name, where) -> None:
    from lsap.modules import LSAP_O

    marker = side_effect_module
    component = hostile_components(marker)[name]
    settings = lsap_o_settings()
    if where == "model":
        model = component
        model = {**component, "init_args": {**component["init_args"], **settings}}
    elif where == "lpips":
        model = {"class_path": "lsap.modules.LSAP_O", "init_args": {**settings, "lpips": component}}
    else:
        model = {"class_path": "lsap.modules.LSAP_O", "init_args": {**settings, "generator": component}}
    folder = write_config(tmp_path / "run", model)

    # re-running the run's optimisation (the edit-and-reinvert LEC)
    with pytest.raises((UnsafeFileError, BadValueError)) as caught:
        module_from_run_config(folder, LSAP_O)
    assert name.split()[0].split(".")[0] in one_line(caught.value) or SIDE_EFFECT_MODULE in str(caught.value)
    # the default generator of `lsap edit` / `lsap evaluate` taken from config.yaml
    with pytest.raises((UnsafeFileError, BadValueError)) as caught:
        generator_from_spec(None, str(folder))
    one_line(caught.value)
    with pytest.raises((UnsafeFileError, BadValueError)):
        generator_from_spec(str(folder / "config.yaml"))
    assert not marker.exists(), "a hostile component ran"


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "side-effect import"])
def test_evaluate_reinvert_refuses_hostile_lpips(tmp_path, side_effect_module, name, capsys) -> None:
    from lsap.cli import main
    from lsap.evaluation import evaluate
    from lsap.results import InversionResults

    marker = side_effect_module
    source = small_source(resolution=16)
    results = InversionResults(tmp_path / "run")
    real = tmp_path / "real"
    g = source.build()
    with torch.no_grad():
        ws = g.mapping(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(0)))[:, None].repeat(
            1, g.num_ws, 1)
        images = g.synthesis(ws, noise_mode="const")
    from PIL import Image

    real.mkdir()
    for i in range(2):
        results.write_code(f"{i}", {"ws": ws[i], "key": f"{i}.png", "name": f"{i}", "meta": {}})
        results.write_image(f"{i}", images[i])
        results.write_record({"name": f"{i}", "key": f"{i}.png", "losses": {}, "nscd": None, "meta": {}})
        array = ((images[i].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(real / f"{i}.png")
    write_config(results.root, {"class_path": "lsap.modules.LSAP_O",
                                "init_args": {**lsap_o_settings(), "lpips": hostile_components(marker)[name]}})
    direction = tmp_path / "dir.pt"
    torch.save(torch.nn.functional.normalize(torch.ones(1, g.w_dim)), direction)
    spec = json.dumps(source.as_dict())
    with pytest.raises(UnsafeFileError):
        evaluate(str(results.root), str(real), generator=spec, direction=str(direction), reinvert=True,
                 batch_size=2, nscd_samples=100, pca_samples=0, output=str(tmp_path / "out"))
    with pytest.raises(SystemExit) as exit_status:
        main(["evaluate", str(results.root), "--real", str(real), "--generator", spec, "--direction", str(direction),
              "--reinvert", "--batch_size", "2", "--nscd_samples", "100", "--pca_samples", "0",
              "--output", str(tmp_path / "out")])
    assert exit_status.value.code == 2
    stderr = capsys.readouterr().err
    error = [line for line in stderr.splitlines() if line.startswith("lsap: error:")]
    assert len(error) == 1 and "refused component" in error[0] and "Traceback" not in stderr
    assert not marker.exists(), "a hostile component ran"


def test_components_must_be_classes_defined_in_lsap(tmp_path) -> None:
    assert resolve_component("lsap.modules.LSAP_O", "x").__name__ == "LSAP_O"
    for refused in ("lsap.metrics.fid.FrechetInceptionDistance",  # a torchmetrics class lsap imports
                    "lsap.model.source.generator_from_spec",  # a function, not a class
                    "lsap.model.run_config.importlib", "lsapx.Thing", "LSAP_O", "torch.nn.Linear",
                    "lsap.__main__.Anything"):  # importing lsap.__main__ would run the command line
        with pytest.raises(UnsafeFileError, match="refused component"):
            resolve_component(refused, "x")
    # an explicit allow-list trusts exactly what it names
    assert resolve_component("torch.nn.Linear", "x", allowed=("torch.nn.Linear",)) is torch.nn.Linear
    with pytest.raises(UnsafeFileError):
        check_components({"a": [{"class_path": "torch.nn.Conv2d"}]}, "x", allowed=("torch.nn.Linear",))


def test_a_legitimate_run_config_rebuilds_the_module_and_checks_its_keys(tmp_path) -> None:
    from lsap.modules import LSAP_E, LSAP_O

    folder = write_config(tmp_path / "run", {"class_path": "lsap.modules.LSAP_O", "init_args": lsap_o_settings()})
    module = module_from_run_config(folder, LSAP_O, {"num_steps": 3})
    assert isinstance(module, LSAP_O) and module.num_steps == 3 and module.hparams.w_std_samples == 100
    with pytest.raises(BadFileError, match="not an LSAP_E run"):
        module_from_run_config(folder, LSAP_E)
    write_config(folder, {"class_path": "lsap.modules.LSAP_O", "init_args": {**lsap_o_settings(), "nmu_steps": 3}})
    with pytest.raises(BadFileError, match="nmu_steps"):
        module_from_run_config(folder, LSAP_O)
    write_config(folder, {"class_path": "lsap.modules.LSAP_O", "init_args": {**lsap_o_settings(), "num_steps": "x"}})
    with pytest.raises(BadFileError, match="num_steps"):
        module_from_run_config(folder, LSAP_O)


def test_unreadable_configs_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(MissingInputError, match="not found"):
        read_run_config(tmp_path / "nothing")
    (tmp_path / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(BadFileError, match="config.yaml"):
        one_line(read_run_config(tmp_path))
    (tmp_path / "config.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(BadFileError):
        read_run_config(tmp_path)
    with pytest.raises(MissingInputError, match="not found"):
        generator_from_spec(None, str(tmp_path / "no_such_run"))


def test_a_bad_generator_spec_names_the_bad_key_and_the_valid_ones(capsys) -> None:
    with pytest.raises(BadValueError) as caught:
        generator_from_spec('{"checkpoint": "fashion32", "foo": 1}')
    message = one_line(caught.value)
    assert "foo" in message and "checkpoint" in message and "channel_base" in message
    with pytest.raises(BadValueError, match="not valid JSON"):
        generator_from_spec('{"checkpoint": ')
    assert isinstance(GeneratorSource.coerce({"seed": 3}), GeneratorSource)
    assert issubclass(BadValueError, InputError)


def test_lsap_edit_with_a_bad_generator_spec_is_one_line(tmp_path, capsys) -> None:
    from lsap.cli import main
    from lsap.results import InversionResults

    results = InversionResults(tmp_path / "run")
    g = small_source(resolution=16).build()
    results.write_code("a", {"ws": torch.zeros(g.num_ws, g.w_dim), "key": "a.png", "name": "a", "meta": {}})
    results.write_record({"name": "a", "key": "a.png", "losses": {}, "nscd": None, "meta": {}})
    with pytest.raises(SystemExit) as exit_status:
        main(["edit", str(results.root), "--generator", '{"checkpoint": "fashion32", "foo": 1}',
              "--direction", "sneaker_to_boot"])
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_status.value.code == 2 and len(error) == 1
    assert "foo" in error[0] and "checkpoint" in error[0] and "noise_strength" in error[0]
