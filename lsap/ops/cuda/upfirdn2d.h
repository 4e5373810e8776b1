// upfirdn2d: zero-insertion up-sampling, padding (negative = crop), FIR correlation and
// down-sampling of [N, C, H, W] images, fused in one pass.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace lsap {

struct UpFirDn2dParams {
  int64_t planes;  // N * C
  int in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // leading padding; trailing padding is implied by out_h / out_w
  int f_h, f_w;
};

// y[p, oy, ox] = sum_{ty, tx} u[p, oy * down_y + ty - pad_y0, ox * down_x + tx - pad_x0] * f[ty, tx]
// where u is x up-sampled by zero insertion (u[q] = x[q / up] when q % up == 0, else 0;
// outside [0, in * up) it is 0). `f` is the correlation kernel (already flipped / scaled
// by the caller), float32 (float64 for double inputs). All tensors contiguous.
void upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, const UpFirDn2dParams& p);

}  // namespace lsap
