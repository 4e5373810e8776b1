"""NSCD metric and NSCD loss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsap.losses.nscd import NSCDLoss
from lsap.metrics import NSCD, Anchors, StyleAlignment, compute_anchors
from lsap.model import Generator
from conftest import small_source

NUM_SAMPLES = 1000


@pytest.fixture(scope="module")
def generator() -> Generator:
    return small_source(32, 1, channel_max=64).build()


@pytest.fixture(scope="module")
def anchors(generator: Generator) -> Anchors:
    return compute_anchors(generator, num_samples=NUM_SAMPLES, seed=0, use_cache=False)


@pytest.fixture(scope="module")
def random_anchors(anchors: Anchors) -> Anchors:
    """Arbitrary anchors (random directions and lengths) with the generator's layout."""
    rng = torch.Generator().manual_seed(11)
    full = [torch.randn(a.shape, generator=rng, dtype=torch.float64) * 0.1 for a in anchors.full]
    return Anchors(full=full, layers=anchors.layers, lsap_indices=anchors.lsap_indices, num_ws=anchors.num_ws,
                   w_dim=anchors.w_dim, num_samples=1, seed=0, generator_hash="random")


def random_styles(anchors: Anchors, batch: int, seed: int, layers: str = "lsap") -> list[torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, layer.channels, generator=rng) for layer in anchors.layers_for(layers)]


def mapped(generator: Generator, batch: int, seed: int) -> torch.Tensor:
    z = torch.randn(batch, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.mapping(z)


def by_hand(styles: list[torch.Tensor], anchor_list: list[torch.Tensor]) -> torch.Tensor:
    """Per-image, per-layer 1 - cos, written out with plain loops."""
    out = torch.zeros(styles[0].shape[0], len(styles), dtype=torch.float64)
    for l, (s, mu) in enumerate(zip(styles, anchor_list)):
        for b in range(s.shape[0]):
            v = s[b].double()
            out[b, l] = 1 - torch.dot(v, mu) / (v.norm() * mu.norm())
    return out


# ----------------------------------------------------------------------------------------
# Metric


@pytest.mark.parametrize("layers", ["lsap", "full"])
def test_metric_matches_hand_computation(random_anchors: Anchors, layers: str) -> None:
    metric = NSCD(anchors=random_anchors, layers=layers)
    batches = [random_styles(random_anchors, 5, seed=1, layers=layers),
               random_styles(random_anchors, 3, seed=2, layers=layers)]
    for styles in batches:
        metric.update(styles)
    expected = torch.cat([by_hand(s, random_anchors.select(layers)) for s in batches])  # [8, L]
    torch.testing.assert_close(metric.compute_per_layer(), expected.mean(0))
    torch.testing.assert_close(metric.compute(), expected.mean())
    assert metric.compute().dtype == torch.float64
    assert metric.compute_per_layer().shape == (len(random_anchors.select(layers)),)
    assert metric.layer_names == [layer.name for layer in random_anchors.layers_for(layers)]


def test_metric_is_invariant_to_positive_scaling(random_anchors: Anchors) -> None:
    styles = random_styles(random_anchors, 6, seed=3)
    reference = NSCD(anchors=random_anchors)
    reference.update(styles)
    rng = torch.Generator().manual_seed(4)
    scaled = [s * torch.empty(1).uniform_(0.01, 100, generator=rng) for s in styles]
    per_image_scaled = [s * torch.rand(s.shape[0], 1, generator=rng).add(0.1) * 50 for s in styles]
    for variant in (scaled, per_image_scaled):
        metric = NSCD(anchors=random_anchors)
        metric.update(variant)
        torch.testing.assert_close(metric.compute_per_layer(), reference.compute_per_layer())


def test_codes_and_styles_give_the_same_value(generator: Generator, anchors: Anchors) -> None:
    ws = mapped(generator, 6, seed=5)[:, None].repeat(1, generator.num_ws, 1)
    ws = ws + 0.1 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(6))  # a real W+ code
    for layers, styles_of in (("lsap", generator.lsap_styles), ("full", generator.styles)):
        from_codes = NSCD(generator=generator, anchors=anchors, layers=layers)
        from_codes.update(ws)
        from_styles = NSCD(anchors=anchors, layers=layers)
        with torch.no_grad():
            from_styles.update(styles_of(ws))
        torch.testing.assert_close(from_codes.compute_per_layer(), from_styles.compute_per_layer(), atol=1e-6, rtol=0)
    # W codes are broadcast to every layer.
    w = mapped(generator, 4, seed=7)
    from_w, from_wplus = NSCD(generator=generator, anchors=anchors), NSCD(generator=generator, anchors=anchors)
    from_w.update(w)
    from_wplus.update(w[:, None].repeat(1, generator.num_ws, 1))
    torch.testing.assert_close(from_w.compute(), from_wplus.compute())


def test_synthetic_codes_score_lower_than_off_distribution(generator: Generator, anchors: Anchors) -> None:
    w = mapped(generator, 64, seed=8)  # fresh samples, not those the anchors were made from
    w_std = (w - w.mean(0)).std()  # per-coordinate spread of the synthetic codes
    rng = torch.Generator().manual_seed(9)
    scores = {}
    for name, codes in {
        "synthetic": w,
        "w + large noise": w + 3 * w_std * torch.randn(w.shape, generator=rng),
        # An independent unmapped Gaussian vector per W+ entry, as a naive code would be.
        "random W+ per layer": torch.randn(64, generator.num_ws, generator.w_dim, generator=rng),
    }.items():
        metric = NSCD(generator=generator, anchors=anchors)
        metric.update(codes)
        scores[name] = metric.compute().item()
    assert scores["synthetic"] < 0.5 * scores["w + large noise"], scores
    assert scores["synthetic"] < 0.7 * scores["random W+ per layer"], scores


def test_metric_forward_is_differentiable_and_accumulates(generator: Generator, anchors: Anchors) -> None:
    metric = NSCD(generator=generator, anchors=anchors)
    ws = [mapped(generator, 4, seed=s).requires_grad_(True) for s in (10, 11)]
    batch_values = [metric(w) for w in ws]
    batch_values[0].backward()
    assert ws[0].grad is not None and ws[0].grad.abs().sum() > 0
    assert not metric.distance_sum.requires_grad  # the running state keeps no graph
    whole = NSCD(generator=generator, anchors=anchors)
    whole.update(torch.cat([w.detach() for w in ws]))
    torch.testing.assert_close(metric.compute(), whole.compute())
    torch.testing.assert_close(torch.stack(batch_values).mean().detach(), whole.compute())  # equal batch sizes
    metric.reset()
    assert metric.num_images.item() == 0


def test_metric_input_errors(generator: Generator, anchors: Anchors) -> None:
    metric = NSCD(generator=generator, anchors=anchors)
    with pytest.raises(ValueError, match=r"num_ws=10 .* num_ws=8.*\[B, 8, 512\].*\(2, 10, 512\)"):
        metric.update(torch.zeros(2, 10, 512))
    with pytest.raises(ValueError, match=r"W \[B, 512\] or W\+ \[B, 8, 512\], got \(2, 7\)"):
        metric.update(torch.zeros(2, 7))
    styles = random_styles(anchors, 2, seed=0)
    with pytest.raises(ValueError, match="expected a list of 8 style tensors .* got 7 tensors"):
        metric.update(styles[:-1])
    with pytest.raises(ValueError, match=r"style of layer convs.1 must have shape \[2, 64\], got \(2, 65\)"):
        metric.update(styles[:1] + [torch.zeros(2, 65)] + styles[2:])
    with pytest.raises(ValueError, match="built from anchors only"):
        NSCD(anchors=anchors).update(torch.zeros(2, 512))
    with pytest.raises(ValueError, match="needs a generator"):
        NSCD()
    other = small_source(64, 1, channel_max=64, w_avg_samples=10).build()
    with pytest.raises(ValueError, match="do not fit the generator"):
        NSCD(generator=other, anchors=anchors)
    changed = copy.deepcopy(generator)
    with torch.no_grad():
        changed.synthesis_network.convs[0].affine.bias += 1
    with pytest.warns(RuntimeWarning, match="other weights"):
        NSCD(generator=changed, anchors=anchors)


def test_metric_dtypes(generator: Generator, anchors: Anchors) -> None:
    w = mapped(generator, 8, seed=12)
    reference = NSCD(generator=generator, anchors=anchors)
    reference.update(w)
    low = NSCD(generator=generator, anchors=anchors)
    low.update(w.to(torch.bfloat16))
    torch.testing.assert_close(low.compute(), reference.compute(), atol=5e-3, rtol=0)
    as_float32 = NSCD(generator=generator, anchors=anchors).set_dtype(torch.float32)
    as_float32.update(w)
    assert as_float32.distance_sum.dtype == torch.float32 and as_float32.alignment.anchors.dtype == torch.float32
    torch.testing.assert_close(as_float32.compute().double(), reference.compute(), atol=1e-6, rtol=0)


class UserModule(nn.Module):
    """What a LightningModule owning the generator, the metric and the loss looks like."""

    def __init__(self, generator: Generator, anchors: Anchors) -> None:
        super().__init__()
        self.generator = generator
        self.nscd = NSCD(generator=generator, anchors=anchors)
        self.nscd_loss = NSCDLoss(generator=generator, anchors=anchors)


def test_checkpoints_hold_the_generator_once_and_everything_moves(generator: Generator, anchors: Anchors) -> None:
    module = UserModule(copy.deepcopy(generator), anchors)
    keys = set(module.state_dict())
    assert keys == {f"generator.{k}" for k in module.generator.state_dict()}
    assert module.nscd.state_dict() == {} and module.nscd_loss.state_dict() == {}
    module.to("meta")  # every tensor the metric and loss use must follow .to()
    for tensors in (list(module.nscd.alignment.buffers()), list(module.nscd_loss.alignment.buffers()),
                    [module.nscd.distance_sum, module.nscd.num_images]):
        assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("layers", ["lsap", "full"])
def test_style_alignment_matches_generator(generator: Generator, anchors: Anchors, layers: str) -> None:
    alignment = StyleAlignment(anchors, layers, generator)
    ws = torch.randn(3, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        expected = generator.lsap_styles(ws) if layers == "lsap" else generator.styles(ws)
    got = alignment.styles(ws)
    assert len(got) == len(expected)
    for style, want in zip(got, expected):
        torch.testing.assert_close(style, want)
    for anchor, want in zip(alignment.anchor_list(), anchors.select(layers)):
        torch.testing.assert_close(anchor, want.float())
    # Padded stacking changes nothing: per-layer values equal an independent computation.
    cosines = torch.stack([F.cosine_similarity(s.double(), mu.double()[None], dim=1)
                           for s, mu in zip(expected, anchors.select(layers))], dim=1)
    torch.testing.assert_close(alignment.cosines(ws, torch.float64), cosines, atol=1e-6, rtol=0)
    assert alignment.state_dict() == {}


def test_style_alignment_stays_float32_under_autocast(generator: Generator, anchors: Anchors) -> None:
    alignment = StyleAlignment(anchors, "lsap", generator)
    ws = mapped(generator, 2, seed=23)
    reference = alignment.distances(ws, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        styles = alignment.styles(ws, torch.float32)
        under = alignment.distances(ws, torch.float32)
    assert all(s.dtype == torch.float32 for s in styles) and under.dtype == torch.float32
    torch.testing.assert_close(under, reference)


# ----------------------------------------------------------------------------------------
# Loss


def test_official_loss_identity(random_anchors: Anchors) -> None:
    styles = random_styles(random_anchors, 5, seed=14)
    official = NSCDLoss(anchors=random_anchors, reduction="none")(styles)
    cosines = torch.stack([F.cosine_similarity(s.double(), mu[None], dim=1)
                           for s, mu in zip(styles, random_anchors.lsap)], dim=1)
    expected = -(random_anchors.norms("lsap")[None] * cosines).sum(1)
    torch.testing.assert_close(official.double(), expected, atol=1e-6, rtol=0)
    mean = NSCDLoss(anchors=random_anchors)(styles)
    torch.testing.assert_close(mean, official.mean())
    cosine = NSCDLoss(anchors=random_anchors, form="cosine", reduction="none")(styles)
    torch.testing.assert_close(cosine.double(), by_hand(styles, random_anchors.lsap).sum(1), atol=1e-6, rtol=0)


def test_official_gradient_is_norm_scaled_cosine_gradient(random_anchors: Anchors) -> None:
    styles = [s.double().requires_grad_(True) for s in random_styles(random_anchors, 4, seed=15)]
    official = NSCDLoss(anchors=random_anchors).double()
    cosine = NSCDLoss(anchors=random_anchors, form="cosine").double()
    grads_official = torch.autograd.grad(official(styles), styles)
    grads_cosine = torch.autograd.grad(cosine(styles), styles)
    for g_off, g_cos, norm in zip(grads_official, grads_cosine, random_anchors.norms("lsap")):
        torch.testing.assert_close(g_off, norm * g_cos)


def test_loss_gradient_matches_finite_differences(generator: Generator, anchors: Anchors) -> None:
    loss = NSCDLoss(generator=generator, anchors=anchors).double()
    rng = torch.Generator().manual_seed(16)
    ws = mapped(generator, 3, seed=17).double()[:, None].repeat(1, generator.num_ws, 1)
    ws = (ws + 0.2 * torch.randn(ws.shape, generator=rng, dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(ws), ws)
    direction = torch.randn(ws.shape, generator=rng, dtype=torch.float64)
    eps = 1e-4
    with torch.no_grad():
        numeric = (loss(ws + eps * direction) - loss(ws - eps * direction)) / (2 * eps)
    torch.testing.assert_close((grad * direction).sum(), numeric, atol=1e-7, rtol=1e-5)


def test_active_layers_mask_later_layers(generator: Generator, anchors: Anchors) -> None:
    loss = NSCDLoss(generator=generator, anchors=anchors, reduction="none")
    ws = mapped(generator, 3, seed=18)[:, None].repeat(1, generator.num_ws, 1)
    ws = (ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(19))).requires_grad_(True)
    per_layer = torch.stack([-loss(ws, active_layers=k).detach() for k in range(1, generator.num_ws + 1)])
    full = loss(ws).detach()
    torch.testing.assert_close(per_layer[-1], -full)
    with torch.no_grad():
        dots = torch.stack([F.normalize(s, dim=1) @ mu.float() for s, mu in zip(generator.lsap_styles(ws),
                                                                                anchors.lsap)], dim=1)
    torch.testing.assert_close(per_layer, dots.cumsum(1).T, atol=1e-5, rtol=0)  # stage k sums layers 0..k-1

    active = 3
    (grad,) = torch.autograd.grad(loss(ws, active_layers=active).sum(), ws)
    assert torch.all(grad[:, active:] == 0)
    assert torch.all(grad[:, :active].abs().sum(-1) > 0)

    styles = [s.detach().requires_grad_(True) for s in generator.lsap_styles(ws)]
    NSCDLoss(anchors=anchors, form="cosine")(styles, active_layers=active).backward()
    assert all(s.grad is None or torch.all(s.grad == 0) for s in styles[active:])
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in styles[:active])

    for bad in (0, generator.num_ws + 1):
        with pytest.raises(ValueError, match=f"between 1 and num_ws=8, got {bad}"):
            loss(ws, active_layers=bad)


def test_loss_per_sample_values_are_independent(generator: Generator, anchors: Anchors) -> None:
    loss = NSCDLoss(generator=generator, anchors=anchors, reduction="none")
    ws = torch.randn(4, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(20))
    together = loss(ws)
    assert together.shape == (4,)
    alone = torch.cat([loss(ws[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)
    # Codes and styles agree, and the loss is cheap enough to take W codes.
    torch.testing.assert_close(NSCDLoss(anchors=anchors, reduction="none")(generator.lsap_styles(ws)), together)
    assert loss(ws[:, 0]).shape == (4,)


def test_loss_input_errors(generator: Generator, anchors: Anchors) -> None:
    loss = NSCDLoss(generator=generator, anchors=anchors)
    with pytest.raises(ValueError, match=r"num_ws=18 .* num_ws=8"):
        loss(torch.zeros(2, 18, 512))
    with pytest.raises(ValueError, match="built from anchors only"):
        NSCDLoss(anchors=anchors)(torch.zeros(2, 512))
    with pytest.raises(ValueError, match="expected a list of 11 style tensors"):
        NSCDLoss(anchors=anchors, layers="full")(random_styles(anchors, 2, seed=0, layers="lsap"))
    with pytest.raises(ValueError, match="form must be 'official' or 'cosine'"):
        NSCDLoss(anchors=anchors, form="dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        NSCDLoss(anchors=anchors, reduction="sum")  # type: ignore[arg-type]


def test_loss_dtypes(generator: Generator, anchors: Anchors) -> None:
    loss = NSCDLoss(generator=generator, anchors=anchors)
    ws = mapped(generator, 4, seed=21)
    reference = loss(ws)
    assert reference.dtype == torch.float32
    low = loss(ws.to(torch.bfloat16))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference, atol=0.05, rtol=0)
    assert loss.double()(ws.double()).dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(generator: Generator, anchors: Anchors) -> None:
    on_gpu = copy.deepcopy(generator).cuda()
    gpu_anchors = compute_anchors(on_gpu, num_samples=NUM_SAMPLES, seed=0, use_cache=False)
    for got, want in zip(gpu_anchors.full, anchors.full):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    ws = mapped(generator, 8, seed=22)
    cpu_metric, gpu_metric = NSCD(generator=generator, anchors=anchors), NSCD(generator=on_gpu, anchors=anchors)
    assert gpu_metric.device.type == "cuda" and gpu_metric.alignment.anchors.device.type == "cuda"
    cpu_metric.update(ws)
    gpu_metric.update(ws.cuda())
    torch.testing.assert_close(gpu_metric.compute().cpu(), cpu_metric.compute(), atol=1e-6, rtol=0)
    gpu_loss = NSCDLoss(generator=on_gpu, anchors=anchors)
    codes = ws.cuda().requires_grad_(True)
    value = gpu_loss(codes)
    value.backward()
    assert codes.grad is not None and value.device.type == "cuda"
    torch.testing.assert_close(value.cpu(), NSCDLoss(generator=generator, anchors=anchors)(ws), atol=1e-5, rtol=0)
