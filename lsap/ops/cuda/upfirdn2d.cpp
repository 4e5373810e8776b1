// Python binding and argument checks of the upfirdn2d kernel.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "common.h"
#include "upfirdn2d.h"

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  LSAP_CHECK_CUDA(x);
  LSAP_CHECK_SAME_DEVICE(x, f);
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W]");
  TORCH_CHECK(f.dim() == 2, "upfirdn2d: the filter must be 2-D");
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(f.scalar_type() == acc_type, "upfirdn2d: the filter must be float32 (float64 for double inputs)");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  TORCH_CHECK(f.size(0) >= 1 && f.size(1) >= 1, "upfirdn2d: empty filter");

  const int64_t in_h = x.size(2), in_w = x.size(3);
  const int64_t span_y = in_h * up_y + pad_y0 + pad_y1 - f.size(0);
  const int64_t span_x = in_w * up_x + pad_x0 + pad_x1 - f.size(1);
  TORCH_CHECK(span_y >= 0 && span_x >= 0, "upfirdn2d: the padded input is smaller than the filter");
  const int64_t out_h = span_y / down_y + 1;
  const int64_t out_w = span_x / down_x + 1;
  TORCH_CHECK(in_h * up_y + std::abs(pad_y0) + f.size(0) < kIntMax &&
                  in_w * up_x + std::abs(pad_x0) + f.size(1) < kIntMax && out_h * out_w < kIntMax,
              "upfirdn2d: image too large for 32-bit in-plane indexing");

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  at::Tensor fc = f.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;

  lsap::UpFirDn2dParams p;
  p.planes = x.size(0) * x.size(1);
  p.in_h = static_cast<int>(in_h);
  p.in_w = static_cast<int>(in_w);
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.f_h = static_cast<int>(f.size(0));
  p.f_w = static_cast<int>(f.size(1));
  lsap::upfirdn2d_cuda(xc, fc, y, p);
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "Fused up-sample / FIR / down-sample (CUDA)", py::arg("x"), py::arg("f"),
        py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"), py::arg("pad_x0"),
        py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"));
}
