// CUDA kernel of bias_act. Every intermediate is rounded to the storage dtype where the
// reference (a chain of PyTorch ops) rounds it, so results match it in every dtype.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "bias_act.h"
#include "common.h"

namespace lsap {
namespace {

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t round_to(acc_t v) {
  return static_cast<acc_t>(static_cast<scalar_t>(v));
}

template <typename scalar_t, typename acc_t, typename index_t, int ACT, bool GRAD>
__global__ void __launch_bounds__(kThreads)
bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b, const scalar_t* __restrict__ ref,
                scalar_t* __restrict__ out, const index_t numel, const index_t inner, const index_t channels,
                const acc_t alpha, const acc_t gain, const acc_t clamp) {
  const index_t stride = static_cast<index_t>(blockDim.x) * static_cast<index_t>(gridDim.x);
  for (index_t i = static_cast<index_t>(blockIdx.x) * static_cast<index_t>(blockDim.x) +
                   static_cast<index_t>(threadIdx.x);
       i < numel; i += stride) {
    acc_t v = static_cast<acc_t>(x[i]);
    if constexpr (!GRAD) {
      if (b != nullptr) v = round_to<scalar_t>(v + static_cast<acc_t>(b[(i / inner) % channels]));
      if constexpr (ACT == kRelu) v = v < acc_t(0) ? acc_t(0) : v;  // keeps NaN like the reference
      if constexpr (ACT == kLrelu) v = v > acc_t(0) ? v : round_to<scalar_t>(v * alpha);
      v = round_to<scalar_t>(v * gain);
      if (clamp >= acc_t(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
    } else {
      // v is the incoming gradient, y the forward output (same sign as the pre-activation
      // for a positive gain; |y| == clamp where the clamp was active).
      const acc_t y = static_cast<acc_t>(ref[i]);
      if (clamp >= acc_t(0) && !(abs(y) < clamp)) v = acc_t(0);
      v = round_to<scalar_t>(v * gain);
      if constexpr (ACT == kRelu) v = y > acc_t(0) ? v : acc_t(0);
      if constexpr (ACT == kLrelu) v = y > acc_t(0) ? v : round_to<scalar_t>(v * alpha);
    }
    out[i] = static_cast<scalar_t>(v);
  }
}

template <typename scalar_t, typename index_t, int ACT, bool GRAD>
void launch_one(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& out,
                const BiasActParams& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const unsigned int blocks = blocks_for(p.numel);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  bias_act_kernel<scalar_t, acc_t, index_t, ACT, GRAD><<<blocks, kThreads, 0, stream>>>(
      x.data_ptr<scalar_t>(), p.has_bias ? b.data_ptr<scalar_t>() : nullptr,
      GRAD ? ref.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), static_cast<index_t>(p.numel),
      static_cast<index_t>(p.inner), static_cast<index_t>(p.channels), static_cast<acc_t>(p.alpha),
      static_cast<acc_t>(p.gain), static_cast<acc_t>(p.clamp));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename index_t, int ACT>
void launch_grad(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& out,
                 const BiasActParams& p) {
  if (p.grad) {
    launch_one<scalar_t, index_t, ACT, true>(x, b, ref, out, p);
  } else {
    launch_one<scalar_t, index_t, ACT, false>(x, b, ref, out, p);
  }
}

template <typename scalar_t, typename index_t>
void launch(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& out,
            const BiasActParams& p) {
  switch (p.act) {
    case kRelu:
      launch_grad<scalar_t, index_t, kRelu>(x, b, ref, out, p);
      break;
    case kLrelu:
      launch_grad<scalar_t, index_t, kLrelu>(x, b, ref, out, p);
      break;
    default:
      launch_grad<scalar_t, index_t, kLinear>(x, b, ref, out, p);
      break;
  }
}

}  // namespace

void bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& ref, at::Tensor& out,
                   const BiasActParams& p) {
  // 32-bit indices when i + grid stride cannot overflow.
  const bool small = p.numel <= std::numeric_limits<int>::max() / 2;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lsap_bias_act", [&] {
    if (small) {
      launch<scalar_t, int>(x, b, ref, out, p);
    } else {
      launch<scalar_t, int64_t>(x, b, ref, out, p);
    }
  });
}

}  // namespace lsap
