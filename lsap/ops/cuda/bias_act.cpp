// Python binding and argument checks of the bias_act kernel.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>

#include "bias_act.h"
#include "common.h"

namespace {

at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, int64_t dim, int64_t act,
                    double alpha, double gain, double clamp, bool grad) {
  LSAP_CHECK_CUDA(x);
  TORCH_CHECK(x.dim() >= 1, "bias_act: x must have at least one dimension");
  TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
  TORCH_CHECK(act >= lsap::kLinear && act <= lsap::kLrelu, "bias_act: unknown activation code");
  const bool has_bias = !grad && b.defined() && b.numel() > 0;
  if (has_bias) {
    LSAP_CHECK_SAME_DEVICE(x, b);
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: bias must have shape [x.size(dim)]");
    TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: bias and x must have the same dtype");
  }
  if (grad) {
    TORCH_CHECK(ref.defined(), "bias_act: the gradient needs the forward output");
    LSAP_CHECK_SAME_DEVICE(x, ref);
    TORCH_CHECK(ref.sizes() == x.sizes(), "bias_act: the forward output must have the shape of the gradient");
    TORCH_CHECK(ref.scalar_type() == x.scalar_type(), "bias_act: the forward output must have the gradient's dtype");
  }

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  at::Tensor bc = has_bias ? b.contiguous() : at::Tensor();
  at::Tensor rc = grad ? ref.contiguous() : at::Tensor();
  at::Tensor out = at::empty(xc.sizes(), xc.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;

  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);

  lsap::BiasActParams p;
  p.numel = xc.numel();
  p.inner = inner;
  p.channels = x.size(dim);
  p.act = static_cast<int>(act);
  p.has_bias = has_bias;
  p.grad = grad;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  lsap::bias_act_cuda(xc, bc, rc, out, p);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its gradient (CUDA)", py::arg("x"),
        py::arg("b"), py::arg("ref"), py::arg("dim"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"), py::arg("grad"));
}
