"""The BiSeNet face parser: the release file's layout, its loader's refusals, inference, and
FaceParserSegmenter feeding SAM's layer selection."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
import yaml

from lsap.errors import BadFileError, MissingInputError, UnsafeFileError
from lsap.nets.face_parser import BiSeNetFaceParser, load_face_parser
from lsap.refine.sam import select_layers, selection_masks
from lsap.refine.segments import FaceParserSegmenter, relabel

pytestmark = pytest.mark.usefixtures("single_thread")

# A few tensors of the release file 79999_iter.pth, written out by hand from the network
# definition of zllrunning/face-parsing.PyTorch (model.py: BiSeNet(n_classes=19) with
# ContextPath, AttentionRefinementModule, FeatureFusionModule(256, 256), BiSeNetOutput heads
# (256, 256, 19), (128, 64, 19), (128, 64, 19); resnet.py: Resnet18 with basic blocks and
# 1x1 "downsample" projections), independent of lsap's module.
RELEASE_TENSORS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.1.conv2.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer3.0.downsample.1.running_mean": (256,),
    "cp.resnet.layer4.1.bn2.weight": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv.conv.weight": (128, 512, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm16.bn_atten.bias": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.running_mean": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}
# Counted by hand from the same definition: 20 convolutions in the ResNet-18 (no fc), 7 in
# the context path's modules, 3 in the fusion module, 6 in the heads -> 36 weights; 31 batch
# norms with weight, bias, running mean, running var and num_batches_tracked each.
RELEASE_TENSOR_COUNT = 36 + 31 * 5


def _randomised(seed: int = 0) -> BiSeNetFaceParser:
    """A parser whose every tensor, batch-norm statistics included, is random."""
    torch.manual_seed(seed)
    net = BiSeNetFaceParser()
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "bn.bias", "bias")):
                tensor.normal_(0, 0.1)
            elif tensor.is_floating_point() and tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def release_file(tmp_path_factory):
    """A file in the release layout (a plain dict of tensors), and the module it came from."""
    net = _randomised()
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    torch.save(net.state_dict(), path)
    return path, net


def _images(n: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_the_module_has_the_release_layout_and_loads_it(release_file):
    path, saved = release_file
    state = torch.load(path, weights_only=True)
    assert len(state) == RELEASE_TENSOR_COUNT
    for key, shape in RELEASE_TENSORS.items():
        assert tuple(state[key].shape) == shape, key
    assert all(torch.is_tensor(v) for v in state.values())

    loaded = load_face_parser(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = saved(x)
        assert torch.equal(loaded(x), expected)
        # a parser with other weights gives other logits: the comparison above can fail
        assert not torch.allclose(_randomised(seed=5)(x), expected)
    main, aux16, aux32 = loaded(x, auxiliary=True)
    assert torch.equal(main, expected) and aux16.shape == aux32.shape == (1, 19, 64, 64)


def test_parse_gives_class_labels_at_the_requested_size(release_file):
    net = load_face_parser(release_file[0])
    images = _images()
    labels = net.parse(images, resolution=64)
    assert labels.shape == (2, 64, 64) and labels.dtype == torch.long
    assert labels.min() >= 0 and labels.max() <= 18
    # the labels are the argmax of the main head on ImageNet-normalised [0, 1] RGB
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        logits = net(((images + 1) / 2 - mean) / std)
    assert torch.equal(labels, logits.argmax(1))
    # labels at another size: nearest-neighbour copies of the parser's
    small = net.parse(images, size=(32, 32), resolution=64)
    assert torch.equal(small, labels[:, ::2, ::2])


def test_parse_feeds_the_parser_512_px_by_default(release_file):
    net = load_face_parser(release_file[0])
    assert inspect.signature(net.parse).parameters["resolution"].default == 512
    assert FaceParserSegmenter("x.pth").resolution == 512
    seen = []

    class Stop(Exception):
        pass

    def record(module, inputs):
        seen.append(tuple(inputs[0].shape))
        raise Stop  # the input shape is all this test needs: skip the 512 px forward

    handle = net.cp.resnet.conv1.register_forward_pre_hook(record)
    try:
        with pytest.raises(Stop):
            net.parse(_images(n=1, size=40))
    finally:
        handle.remove()
    assert seen == [(1, 3, 512, 512)]


def test_wrong_missing_and_unsafe_files_are_refused(release_file, tmp_path):
    state = torch.load(release_file[0], weights_only=True)
    state["cp.resnet.conv_extra.weight"] = state.pop("cp.resnet.conv1.weight")
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(BadFileError, match=r"cp\.resnet\.conv_extra\.weight") as error:
        load_face_parser(wrong)
    assert "cp.resnet.conv1.weight" in str(error.value) and "wrong.pth" in str(error.value)

    with pytest.raises(MissingInputError, match="79999_iter.pth") as error:
        load_face_parser(tmp_path / "absent.pth")
    assert "absent.pth" in str(error.value) and "never downloads" in str(error.value)
    with pytest.raises(MissingInputError, match="79999_iter.pth"):
        FaceParserSegmenter(str(tmp_path / "absent.pth"))(_images(n=1, size=8), ["x"])

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"cp.resnet.conv1.weight": _RunsCode()}, unsafe)
    with pytest.raises(UnsafeFileError, match="unsafe.pth"):
        load_face_parser(unsafe)
    assert _RAN == []  # refused without running anything

    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(BadFileError, match="list.pth"):
        load_face_parser(not_a_dict)


_RAN: list[str] = []


def _record_run(tag: str) -> list[str]:
    _RAN.append(tag)
    return _RAN


class _RunsCode:
    """Pickles as a call of :func:`_record_run`: loading it would run code."""

    def __reduce__(self):
        return (_record_run, ("loaded",))


def test_face_parser_segments_plug_into_sam_selection(release_file, tmp_path):
    path = tmp_path / "79999_iter.pth"
    path.write_bytes(Path(release_file[0]).read_bytes())
    segmenter = FaceParserSegmenter(str(path), resolution=64)
    assert vars(segmenter) == {"weights": path, "resolution": 64}  # the settings SAM records
    images = _images(size=48)
    labels = segmenter(images, ["a", "b"])
    assert labels.shape == (2, 48, 48) and labels.dtype == torch.long
    # each image's parser classes, renumbered 0..K-1
    classes = load_face_parser(path).parse(images, resolution=64)
    for one, raw in zip(labels, classes):
        assert torch.equal(one, torch.from_numpy(relabel(raw.numpy())))
        assert one.unique().tolist() == list(range(len(raw.unique())))
    # loaded once: later calls use the cached parser, even with the file gone
    parser = segmenter.parser()
    path.unlink()
    assert torch.equal(segmenter(images, ["a", "b"]), labels) and segmenter.parser() is parser

    maps = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    selection = select_layers(maps, labels, tau=0.5)
    assert selection.shape == (2, 48, 48) and 0 <= selection.min() and selection.max() <= 2
    # every segment takes one layer
    for one_labels, one_selection in zip(labels, selection):
        for k in one_labels.unique():
            assert len(one_selection[one_labels == k].unique()) == 1
    masks = selection_masks(selection, blocks=[4, 8])
    assert masks[4].shape == (2, 1, 4, 4) and masks[8].shape == (2, 1, 8, 8)
    for block, layer in ((4, 1), (8, 2)):
        assert 0 <= float(masks[block].min()) and float(masks[block].max()) <= 1
        # a block's mask is where its layer was selected: all zero exactly when never chosen
        assert bool((masks[block] > 0).any()) == bool((selection == layer).any())


def test_the_face_config_runs_the_parser_from_the_users_file():
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "sam_face.yaml").read_text())
    spec = config["model"]["init_args"]["segmenter"]
    module, _, name = spec["class_path"].rpartition(".")
    segmenter = getattr(importlib.import_module(module), name)(**spec["init_args"])
    assert isinstance(segmenter, FaceParserSegmenter)
    assert segmenter.weights == Path("pretrained/79999_iter.pth") and segmenter.resolution == 512
