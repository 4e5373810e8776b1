"""The accelerated ``impl="cuda"`` path.

* CPU-runnable: the build plumbing (nothing compiles at import, CPU tensors never build,
  a failed build warns once and is not retried, successful builds are cached) and the
  autograd wiring of the CUDA ops, driven by pure-PyTorch stand-ins for the compiled
  kernels (same call signature and semantics), so gradient formulas are checked here.
* ``@pytest.mark.cuda``: the real kernels against the reference path, forward and
  gradients, per op and for a whole small generator (skipped without a CUDA device).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from lsap.model import Generator
from lsap.ops import _build, bias_act, modulated_conv2d, setup_filter, upfirdn2d
from lsap.ops.bias_act import bias_act_cuda
from lsap.ops.upfirdn2d import _upfirdn2d_ref, upfirdn2d_cuda

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@pytest.fixture
def clean_build_state(monkeypatch, tmp_path):
    """Fresh plugin cache, builds redirected to a temporary directory."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    saved_plugins, saved_failures = dict(_build._plugins), dict(_build._failures)
    _build._reset()
    yield tmp_path / "ext"
    _build._reset()
    _build._plugins.update(saved_plugins)
    _build._failures.update(saved_failures)


def _tiny_generator(seed: int = 0, **kw) -> Generator:
    torch.manual_seed(seed)
    g = Generator(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16, **kw)
    # Non-zero noise strengths and biases so every path contributes.
    with torch.no_grad():
        for p_name, p in g.named_parameters():
            if p_name.endswith("noise_strength") or p_name.endswith(".bias"):
                p.uniform_(-0.3, 0.3)
    return g


# ======================================================================================
# CPU: build plumbing


def test_import_never_builds(tmp_path):
    """``import lsap`` (and a CPU run with impl='cuda') neither imports the C++ extension
    machinery nor writes a build directory."""
    ext = tmp_path / "ext"
    code = r"""
import json, sys
import lsap, lsap.ops
after_import = "torch.utils.cpp_extension" in sys.modules
import torch
from lsap.ops import bias_act, upfirdn2d, modulated_conv2d, setup_filter
x = torch.randn(1, 2, 8, 8)
upfirdn2d(x, setup_filter([1, 3, 3, 1]), up=2, padding=[2, 1, 2, 1], impl="cuda")
bias_act(x, torch.zeros(2), act="lrelu", impl="cuda")
modulated_conv2d(x, torch.randn(3, 2, 3, 3), torch.ones(1, 2), up=2, resample_filter=setup_filter([1, 3, 3, 1]), impl="cuda")
build = sys.modules.get("lsap.ops._build")
print(json.dumps({"after_import": after_import, "after_cpu_run": "torch.utils.cpp_extension" in sys.modules,
                  "built": [] if build is None else sorted(build._plugins) + sorted(build._failures)}))
"""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(ext))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"after_import": False, "after_cpu_run": False, "built": []}
    assert not ext.exists() or not any(ext.iterdir())


def test_cuda_impl_on_cpu_is_ref_and_never_calls_the_builder(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the CUDA builder must not be called for CPU tensors")

    monkeypatch.setattr(_build, "get_plugin", forbidden)
    monkeypatch.setattr(_build, "_compile", forbidden)
    torch.manual_seed(0)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 9, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kw in (dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(padding=[-1, 2, 0, 1])):
            assert torch.equal(upfirdn2d(x, f, impl="cuda", **kw), upfirdn2d(x, f, impl="ref", **kw))
        b = torch.randn(3)
        for act in ("linear", "relu", "lrelu"):
            assert torch.equal(bias_act(x, b, act=act, clamp=0.5, impl="cuda"),
                               bias_act(x, b, act=act, clamp=0.5, impl="ref"))
        w, s = torch.randn(4, 3, 3, 3), torch.randn(2, 3)
        for up in (1, 2):
            assert torch.equal(modulated_conv2d(x, w, s, up=up, resample_filter=f, impl="cuda"),
                               modulated_conv2d(x, w, s, up=up, resample_filter=f, impl="ref"))
        g_ref, g_cuda = _tiny_generator(impl="ref"), _tiny_generator(impl="cuda")
        ws = torch.randn(2, g_ref.num_ws, g_ref.w_dim)
        assert torch.equal(g_cuda.synthesis(ws), g_ref.synthesis(ws))


def test_failed_build_warns_once_per_op_and_is_not_retried(monkeypatch, clean_build_state):
    calls = []

    def failing_compile(module_name, sources, directory, verbose):
        calls.append(module_name)
        raise RuntimeError("nvcc fatal: simulated toolchain failure")

    monkeypatch.setattr(_build, "_compile", failing_compile)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        results = [_build.get_plugin("upfirdn2d") for _ in range(3)]
    assert results == [None, None, None]
    assert len(calls) == 1
    build_warnings = [w for w in rec if issubclass(w.category, _build.CudaBuildWarning)]
    assert len(build_warnings) == 1 and len(rec) == 1
    message = str(build_warnings[0].message)
    assert "upfirdn2d" in message and "simulated toolchain failure" in message and "impl='ref'" in message
    assert "simulated toolchain failure" in _build.build_failure("upfirdn2d")
    assert not _build.is_built("upfirdn2d")

    # The other op has its own build and its own single warning.
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert _build.get_plugin("bias_act") is None
        assert _build.get_plugin("bias_act") is None
    assert len(rec) == 1 and "bias_act" in str(rec[0].message)
    assert len(calls) == 2

    # The op entry points (as seen by a CUDA tensor) now get no plugin -> reference path,
    # silently and without building again.
    x = torch.randn(1, 2, 6, 6)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        plugin_u, plugin_b = _build.get_plugin("upfirdn2d"), _build.get_plugin("bias_act")
        assert upfirdn2d_cuda(x, setup_filter([1, 3, 3, 1]), (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, plugin_u) is None
        assert bias_act_cuda(x, torch.zeros(2), 1, "lrelu", 0.2, 2**0.5, None, plugin_b) is None
    assert rec == [] and len(calls) == 2


def test_failed_build_warning_reports_compiler_errors(monkeypatch, clean_build_state):
    class NinjaError(RuntimeError):
        pass

    def failing_compile(module_name, sources, directory, verbose):
        raise NinjaError("Error building extension 'x':\n[1/3] c++ ...\nfoo.cu(12): error: identifier \"bar\" is undefined\n")

    monkeypatch.setattr(_build, "_compile", failing_compile)
    with pytest.warns(_build.CudaBuildWarning, match=r"identifier \"bar\" is undefined"):
        assert _build.get_plugin("bias_act") is None


def test_successful_build_is_cached_in_a_hashed_directory(monkeypatch, clean_build_state):
    calls = []
    sentinel = object()

    def fake_compile(module_name, sources, directory, verbose):
        calls.append((module_name, list(sources), Path(directory)))
        return sentinel

    monkeypatch.setattr(_build, "_compile", fake_compile)
    assert _build.get_plugin("upfirdn2d") is sentinel
    assert _build.get_plugin("upfirdn2d") is sentinel
    assert len(calls) == 1 and _build.is_built("upfirdn2d")
    module_name, sources, directory = calls[0]
    digest = _build.build_hash("upfirdn2d")
    assert directory.parent == clean_build_state and directory.name == f"upfirdn2d_{digest[:20]}"
    assert module_name.startswith("lsap_upfirdn2d_") and digest[:20] in module_name
    # The compiled sources are staged copies inside the build directory.
    assert sorted(s.name for s in sources) == ["upfirdn2d.cpp", "upfirdn2d.cu"]
    for name in _build.PLUGIN_SOURCES["upfirdn2d"]:
        staged = directory / "src" / name
        assert staged.read_bytes() == (_build.SOURCE_DIR / name).read_bytes()
    assert all(s.parent == directory / "src" for s in sources)


def test_cache_root_defaults_to_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.delenv("LSAP_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _build.cache_root() == tmp_path / ".cache" / "lsap" / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "elsewhere"))
    assert _build.cache_root() == tmp_path / "elsewhere"


def test_build_hash_tracks_sources_and_targets(monkeypatch, tmp_path):
    src = tmp_path / "cuda"
    src.mkdir()
    for p in _build.SOURCE_DIR.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(_build, "SOURCE_DIR", src)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    base = _build.build_hash("bias_act")
    assert _build.build_hash("bias_act") == base
    assert _build.build_hash("upfirdn2d") != base
    (src / "common.h").write_bytes((src / "common.h").read_bytes() + b"\n// changed\n")
    changed = _build.build_hash("bias_act")
    assert changed != base
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    assert _build.build_hash("bias_act") != changed
    with pytest.raises(KeyError):
        _build.build_hash("nope")


def test_sources_exist_and_are_packaged():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lsap.ops"]
    for names in _build.PLUGIN_SOURCES.values():
        for name in names:
            path = _build.SOURCE_DIR / name
            assert path.is_file(), path
            assert any(Path("cuda", name).match(p) for p in patterns), name


# ======================================================================================
# CPU: autograd wiring, with pure-PyTorch stand-ins for the compiled kernels


class _FakeUpFirDn2dPlugin:
    """Same contract as cuda/upfirdn2d.cpp: ``f`` is the 2-D correlation kernel."""

    def __init__(self):
        self.calls = 0

    def upfirdn2d(self, x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
        self.calls += 1
        assert f.ndim == 2 and f.dtype == (torch.float64 if x.dtype == torch.float64 else torch.float32)
        # Correlating with f is the reference's flip_filter=True convolution.
        return _upfirdn2d_ref(x, f.to(x.dtype), (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1),
                              True, 1.0)


class _FakeBiasActPlugin:
    """Same contract as cuda/bias_act.cpp."""

    def __init__(self):
        self.calls = 0

    def bias_act(self, x, b, ref, dim, act, alpha, gain, clamp, grad):
        self.calls += 1
        if not grad:
            y = x
            if b.numel():
                shape = [1] * x.ndim
                shape[dim] = -1
                y = y + b.reshape(shape)
            if act == 1:
                y = torch.relu(y)
            elif act == 2:
                y = torch.where(y > 0, y, y * alpha)
            y = y * gain
            return y.clamp(-clamp, clamp) if clamp >= 0 else y
        g = x
        if clamp >= 0:
            g = torch.where(ref.abs() < clamp, g, torch.zeros_like(g))
        g = g * gain
        if act == 1:
            g = torch.where(ref > 0, g, torch.zeros_like(g))
        elif act == 2:
            g = torch.where(ref > 0, g, g * alpha)
        return g


@pytest.fixture
def fake_kernels():
    """Pure-PyTorch stand-ins for the compiled plugins, passed to the accelerated entry
    points (``upfirdn2d_cuda``, ``bias_act_cuda``) as arguments, so their autograd wiring
    runs on CPU tensors."""
    return {"upfirdn2d": _FakeUpFirDn2dPlugin(), "bias_act": _FakeBiasActPlugin()}


def _upfirdn2d_fake(plugins, x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    pad = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    return upfirdn2d_cuda(x, f, pair(up), pair(down), pad, flip_filter, gain, plugins["upfirdn2d"])


def _bias_act_fake(plugins, x, b, dim=1, act="linear", alpha=0.2, gain=None, clamp=None):
    gain = {"linear": 1.0}.get(act, 2**0.5) if gain is None else gain
    return bias_act_cuda(x, b, dim, act, alpha, gain, clamp, plugins["bias_act"])


UPFIRDN_CASES = [
    # (filter taps, 2-D?, up, down, padding, flip, gain)
    ([1, 3, 3, 1], True, 1, 1, [1, 2, 1, 2], False, 1.0),
    ([1, 3, 3, 1], True, 2, 1, [2, 1, 2, 1], False, 4.0),
    ([1, 3, 3, 1], True, 1, 2, [1, 1, 1, 1], False, 1.0),
    ([1, 2, 5, 3], True, 1, 1, [3, 0, 1, 2], True, 1.5),
    ([1, 2, 5, 3], False, 2, 1, [2, 1, 0, 3], False, 4.0),
    ([1, 2, 5, 3, 4], True, (3, 2), (1, 2), [3, 2, 1, 4], False, 2.0),
    ([1, 3, 3, 1], True, 2, 3, [-1, 2, 3, -2], True, 1.0),
    ([2.0], True, 1, 2, [0, 0, 0, 0], False, 1.0),
]


def _asym_filter(taps, two_d):
    f = setup_filter(taps, separable=not two_d)
    if two_d:
        # An asymmetric 2-D filter catches flip / transpose mistakes.
        f = f * torch.linspace(0.5, 1.5, f.shape[0])[:, None]
    return f


@pytest.mark.parametrize("case", UPFIRDN_CASES)
def test_upfirdn2d_function_matches_ref_with_fake_kernel(fake_kernels, case):
    taps, two_d, up, down, padding, flip, gain = case
    f = _asym_filter(taps, two_d)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y_ref = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl="ref")
    y = _upfirdn2d_fake(fake_kernels, x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    assert fake_kernels["upfirdn2d"].calls == 1
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref)
    dy = torch.randn_like(y)
    (g_ref,) = torch.autograd.grad(y_ref, x, dy)
    (g,) = torch.autograd.grad(y, x, dy)
    assert fake_kernels["upfirdn2d"].calls == 2  # the gradient is itself an upfirdn2d
    torch.testing.assert_close(g, g_ref)


def test_upfirdn2d_function_gradcheck_and_double_backward(fake_kernels):
    f = _asym_filter([1, 2, 5, 3], True).double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda t: upfirdn2d_cuda(t, f, (2, 2), (1, 2), (2, 1, 1, 2), False, 3.0, fake_kernels["upfirdn2d"])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("dim", [1, 2])
def test_bias_act_function_matches_ref_with_fake_kernel(fake_kernels, act, clamp, dim):
    torch.manual_seed(2)
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(x.shape[dim], dtype=torch.float64, requires_grad=True)
    y_ref = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="ref")
    y = _bias_act_fake(fake_kernels, x, b, dim=dim, act=act, clamp=clamp)
    assert fake_kernels["bias_act"].calls == 1
    torch.testing.assert_close(y, y_ref)
    dy = torch.randn_like(y)
    gx_ref, gb_ref = torch.autograd.grad(y_ref, (x, b), dy, create_graph=True)
    gx, gb = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gb, gb_ref)
    # Second order (what gradient penalties differentiate): d(gx . v)/d(dy) is act'(y) v.
    v = torch.randn_like(gx)
    dyy = dy.clone().requires_grad_(True)
    (gx1,) = torch.autograd.grad(_bias_act_fake(fake_kernels, x, b, dim=dim, act=act, clamp=clamp), x, dyy,
                                 create_graph=True)
    (gx1_ref,) = torch.autograd.grad(bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="ref"), x, dyy,
                                     create_graph=True)
    (h,) = torch.autograd.grad((gx1 * v).sum(), dyy)
    (h_ref,) = torch.autograd.grad((gx1_ref * v).sum(), dyy)
    torch.testing.assert_close(h, h_ref)


def test_bias_act_function_gradcheck(fake_kernels):
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)  # away from the kink
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda t, bb: bias_act_cuda(t, bb, 1, "lrelu", 0.2, 1.7, 10.0, fake_kernels["bias_act"])  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_without_bias_and_linear(fake_kernels):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = _bias_act_fake(fake_kernels, x, None, act="linear", gain=3.0)
    torch.testing.assert_close(y, x * 3.0)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.full_like(x, 3.0))


def test_unsupported_cases_return_none(fake_kernels):
    x = torch.randn(1, 2, 5, 5)
    f = setup_filter([1, 3, 3, 1])
    pu, pb = fake_kernels["upfirdn2d"], fake_kernels["bias_act"]
    assert upfirdn2d_cuda(x.int(), f, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0, pu) is None
    assert upfirdn2d_cuda(x, f.clone().requires_grad_(True), (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0, pu) is None
    assert upfirdn2d_cuda(x, f, (1, 1), (1, 1), (-3, -3, 0, 0), False, 1.0, pu) is None  # nothing left to filter
    assert upfirdn2d_cuda(x, f, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0, None) is None  # no plugin
    assert bias_act_cuda(x, None, 1, "lrelu", 0.2, -1.0, None, pb) is None  # negative gain
    assert bias_act_cuda(x, None, 1, "gelu", 0.2, 1.0, None, pb) is None
    assert fake_kernels["upfirdn2d"].calls == 0 and fake_kernels["bias_act"].calls == 0


# ======================================================================================
# GPU: the real kernels against the reference


@pytest.fixture
def cuda_device():
    """The last visible GPU (catches code that assumes cuda:0), exact fp32 convolutions."""
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.cuda.device(0):  # current device != data device when there are several
        yield device
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=5e-3, atol=5e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
}


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", sorted(_build.PLUGIN_SOURCES))
def test_plugins_build(name):
    plugin = _build.get_plugin(name)
    assert plugin is not None, f"build failed: {_build.build_failure(name)}"
    assert _build.get_plugin(name) is plugin


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("case", UPFIRDN_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_upfirdn2d_cuda_matches_ref(cuda_device, case, dtype):
    taps, two_d, up, down, padding, flip, gain = case
    f = _asym_filter(taps, two_d).to(cuda_device)
    torch.manual_seed(4)
    x = torch.randn(3, 5, 13, 11, device=cuda_device, dtype=dtype, requires_grad=True)
    kw = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _build.CudaBuildWarning)
        y = upfirdn2d(x, f, impl="cuda", **kw)
    assert isinstance(y.grad_fn, torch.autograd.function.BackwardCFunction)  # the custom op ran
    y_ref = upfirdn2d(x, f, impl="ref", **kw)
    assert y.shape == y_ref.shape and y.dtype == dtype and y.device == cuda_device
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    dy = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, dy)[0], torch.autograd.grad(y_ref, x, dy)[0], **TOL[dtype])


@pytest.mark.cuda
@needs_cuda
def test_upfirdn2d_cuda_noncontiguous_large_and_gradcheck(cuda_device):
    f = setup_filter([1, 3, 3, 1]).to(cuda_device)
    x = torch.randn(2, 64, 70, 3, device=cuda_device).transpose(1, 3)  # non-contiguous
    for kw in (dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(padding=[2, 1, 2, 1])):
        torch.testing.assert_close(upfirdn2d(x, f, impl="cuda", **kw), upfirdn2d(x, f, impl="ref", **kw),
                                   rtol=1e-5, atol=1e-5)
    fd = _asym_filter([1, 2, 5, 3], True).double().to(cuda_device)
    xd = torch.randn(1, 2, 5, 4, dtype=torch.float64, device=cuda_device, requires_grad=True)
    fn = lambda t: upfirdn2d_cuda(t, fd, (2, 2), (1, 2), (2, 1, 1, 2), False, 3.0, _build.get_plugin("upfirdn2d"))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xd,))
    assert torch.autograd.gradgradcheck(fn, (xd,))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_bias_act_cuda_matches_ref(cuda_device, act, clamp, dtype):
    torch.manual_seed(5)
    for dim, shape in ((1, (4, 33, 7, 5)), (2, (3, 2, 17)), (1, (6, 40))):
        x = torch.randn(*shape, device=cuda_device, dtype=dtype, requires_grad=True)
        b = torch.randn(shape[dim], device=cuda_device, dtype=dtype, requires_grad=True)
        y = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="cuda")
        assert isinstance(y.grad_fn, torch.autograd.function.BackwardCFunction)
        y_ref = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="ref")
        torch.testing.assert_close(y, y_ref, **TOL[dtype])
        dy = torch.randn_like(y)
        gx, gb = torch.autograd.grad(y, (x, b), dy)
        gx_ref, gb_ref = torch.autograd.grad(y_ref, (x, b), dy)
        torch.testing.assert_close(gx, gx_ref, **TOL[dtype])
        tol = TOL[dtype] if dtype in (torch.float32, torch.float64) else dict(rtol=5e-2, atol=5e-2)
        torch.testing.assert_close(gb, gb_ref, **tol)


@pytest.mark.cuda
@needs_cuda
def test_bias_act_cuda_double_backward_and_nan(cuda_device):
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=cuda_device)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, device=cuda_device, requires_grad=True)
    fn = lambda t, bb: bias_act_cuda(t, bb, 1, "lrelu", 0.2, 1.7, 10.0, _build.get_plugin("bias_act"))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    z = torch.tensor([float("nan"), -1.0, 2.0], device=cuda_device)
    for act in ("linear", "relu", "lrelu"):
        out = bias_act(z, None, dim=0, act=act, clamp=1.5, impl="cuda")
        torch.testing.assert_close(out, bias_act(z, None, dim=0, act=act, clamp=1.5, impl="ref"), equal_nan=True)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,demod,k", [(1, True, 3), (2, True, 3), (1, False, 1)])
def test_modulated_conv_cuda_matches_ref(cuda_device, fused, up, demod, k):
    torch.manual_seed(6)
    f = setup_filter([1, 3, 3, 1]).to(cuda_device)
    x = torch.randn(4, 16, 9, 9, device=cuda_device, requires_grad=True)
    w = (torch.randn(24, 16, k, k, device=cuda_device) / (16 * k * k) ** 0.5).requires_grad_(True)
    s = (torch.randn(4, 16, device=cuda_device) + 1).requires_grad_(True)
    y = modulated_conv2d(x, w, s, demodulate=demod, up=up, resample_filter=f, fused=fused, impl="cuda")
    y_ref = modulated_conv2d(x, w, s, demodulate=demod, up=up, resample_filter=f, fused=fused, impl="ref")
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    dy = torch.randn_like(y)
    for g, g_ref in zip(torch.autograd.grad(y, (x, w, s), dy), torch.autograd.grad(y_ref, (x, w, s), dy)):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fused", [True, False])
def test_generator_cuda_matches_ref(cuda_device, fused):
    g = _tiny_generator(conv_clamp=256.0, fused_modconv=fused).to(cuda_device)
    ws = torch.randn(3, g.num_ws, g.w_dim, device=cuda_device, requires_grad=True)
    g.impl = "ref"
    img_ref = g.synthesis(ws, noise_mode="const")
    grads_ref = torch.autograd.grad(img_ref.square().mean(), [ws, *g.parameters()], allow_unused=True)
    g.impl = "cuda"
    with warnings.catch_warnings():
        warnings.simplefilter("error", _build.CudaBuildWarning)
        img = g.synthesis(ws, noise_mode="const")
    grads = torch.autograd.grad(img.square().mean(), [ws, *g.parameters()], allow_unused=True)
    assert _build.is_built("upfirdn2d") and _build.is_built("bias_act")
    torch.testing.assert_close(img, img_ref, rtol=1e-4, atol=1e-4)
    for a, r in zip(grads, grads_ref):
        assert (a is None) == (r is None)
        if a is not None:
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)


def test_prepared_filter_follows_in_place_changes(fake_kernels):
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 6, 6)
    a = upfirdn2d_cuda(x, f, (1, 1), (1, 1), (1, 2, 1, 2), False, 1.0, fake_kernels["upfirdn2d"])
    assert torch.equal(upfirdn2d_cuda(x, f, (1, 1), (1, 1), (1, 2, 1, 2), False, 1.0, fake_kernels["upfirdn2d"]), a)
    with torch.no_grad():
        f.mul_(2)
    b = upfirdn2d_cuda(x, f, (1, 1), (1, 1), (1, 2, 1, 2), False, 1.0, fake_kernels["upfirdn2d"])
    torch.testing.assert_close(b, 2 * a)
    torch.testing.assert_close(b, upfirdn2d(x, f, padding=(1, 2, 1, 2), impl="ref"))


def test_inference_mode_filters_work(fake_kernels):
    with torch.inference_mode():
        f = setup_filter([1, 3, 3, 1])
        x = torch.randn(1, 2, 6, 6)
        y = upfirdn2d_cuda(x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0, fake_kernels["upfirdn2d"])
        torch.testing.assert_close(y, upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, impl="ref"))
