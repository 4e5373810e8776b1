// bias_act: fused bias + activation + gain + clamp, and its gradient.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace lsap {

enum BiasActKind : int { kLinear = 0, kRelu = 1, kLrelu = 2 };

struct BiasActParams {
  int64_t numel;
  int64_t inner;     // product of the sizes after `dim` (x is contiguous)
  int64_t channels;  // x.size(dim)
  int act;
  bool has_bias;
  bool grad;         // false: out = clamp(act(x + b) * gain); true: out = d(out)/d(x) * x given out = ref
  double alpha, gain, clamp;  // clamp < 0: no clamp
};

// Forward (grad == false): out = clamp(act(x + b) * gain, -clamp, clamp).
// Gradient (grad == true): x holds the incoming gradient dy and ref the forward output y;
// out = dy masked by the clamp, times gain, times act'(y). Contiguous tensors of one dtype.
void bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& out,
                   const BiasActParams& p);

}  // namespace lsap
