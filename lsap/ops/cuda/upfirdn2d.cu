// CUDA kernel of upfirdn2d: one thread per output sample, visiting only the filter taps
// that land on stored (non-inserted) input samples. The common StyleGAN2 cases (4x4
// filter with up=1/down=1, up=2, down=2) get compile-time sizes so the tap loops unroll.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "common.h"
#include "upfirdn2d.h"

namespace lsap {
namespace {

// Taps per axis that can hit stored samples, for a compile-time filter size and up factor.
constexpr int taps_per_axis(int filter_size, int up) { return (filter_size > 0 && up > 0) ? (filter_size + up - 1) / up : 0; }

__device__ __forceinline__ int round_up(int v, int m) { return ((v + m - 1) / m) * m; }

template <typename scalar_t, typename acc_t, typename index_t, int UP, int DOWN, int FS>
__global__ void __launch_bounds__(kThreads)
upfirdn2d_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ f, scalar_t* __restrict__ y,
                 const UpFirDn2dParams p, const index_t total) {
  const int up_x = UP ? UP : p.up_x;
  const int up_y = UP ? UP : p.up_y;
  const int down_x = DOWN ? DOWN : p.down_x;
  const int down_y = DOWN ? DOWN : p.down_y;
  const int f_h = FS ? FS : p.f_h;
  const int f_w = FS ? FS : p.f_w;
  const int up_h = p.in_h * up_y;
  const int up_w = p.in_w * up_x;
  const index_t stride = static_cast<index_t>(blockDim.x) * static_cast<index_t>(gridDim.x);

  for (index_t idx = static_cast<index_t>(blockIdx.x) * static_cast<index_t>(blockDim.x) + static_cast<index_t>(threadIdx.x); idx < total; idx += stride) {
    const index_t row = idx / p.out_w;
    const int ox = static_cast<int>(idx - row * p.out_w);
    const index_t plane = row / p.out_h;
    const int oy = static_cast<int>(row - plane * p.out_h);
    const scalar_t* __restrict__ xp = x + static_cast<int64_t>(plane) * p.in_h * p.in_w;

    // Position of tap 0 in the up-sampled, unpadded image; the taps cover [b, b + f).
    const int by = oy * down_y - p.pad_y0;
    const int bx = ox * down_x - p.pad_x0;
    // First tap on a stored sample (multiple of up, inside the image), and the end.
    const int qy0 = round_up(by > 0 ? by : 0, up_y);
    const int qx0 = round_up(bx > 0 ? bx : 0, up_x);
    const int qy1 = min(by + f_h, up_h);
    const int qx1 = min(bx + f_w, up_w);

    acc_t acc = acc_t(0);
    constexpr int T = taps_per_axis(FS, UP);
    if constexpr (T > 0) {
#pragma unroll
      for (int ky = 0; ky < T; ++ky) {
        const int qy = qy0 + ky * up_y;
        if (qy < qy1) {
          const acc_t* __restrict__ frow = f + (qy - by) * f_w;
          const scalar_t* __restrict__ xrow = xp + static_cast<int64_t>(qy / up_y) * p.in_w;
#pragma unroll
          for (int kx = 0; kx < T; ++kx) {
            const int qx = qx0 + kx * up_x;
            if (qx < qx1) acc += static_cast<acc_t>(xrow[qx / up_x]) * frow[qx - bx];
          }
        }
      }
    } else {
      for (int qy = qy0; qy < qy1; qy += up_y) {
        const acc_t* __restrict__ frow = f + (qy - by) * f_w;
        const scalar_t* __restrict__ xrow = xp + static_cast<int64_t>(qy / up_y) * p.in_w;
        for (int qx = qx0; qx < qx1; qx += up_x) acc += static_cast<acc_t>(xrow[qx / up_x]) * frow[qx - bx];
      }
    }
    y[idx] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename acc_t, typename index_t, int UP, int DOWN, int FS>
void launch_one(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, const UpFirDn2dParams& p) {
  const int64_t total = y.numel();
  const unsigned int blocks = blocks_for(total);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  upfirdn2d_kernel<scalar_t, acc_t, index_t, UP, DOWN, FS><<<blocks, kThreads, 0, stream>>>(
      x.data_ptr<scalar_t>(), f.data_ptr<acc_t>(), y.data_ptr<scalar_t>(), p, static_cast<index_t>(total));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t, typename index_t>
void launch(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, const UpFirDn2dParams& p) {
  const bool square = p.up_x == p.up_y && p.down_x == p.down_y && p.f_h == p.f_w;
  if (square && p.f_h == 4 && p.up_x == 1 && p.down_x == 1) {
    launch_one<scalar_t, acc_t, index_t, 1, 1, 4>(x, f, y, p);
  } else if (square && p.f_h == 4 && p.up_x == 2 && p.down_x == 1) {
    launch_one<scalar_t, acc_t, index_t, 2, 1, 4>(x, f, y, p);
  } else if (square && p.f_h == 4 && p.up_x == 1 && p.down_x == 2) {
    launch_one<scalar_t, acc_t, index_t, 1, 2, 4>(x, f, y, p);
  } else {
    launch_one<scalar_t, acc_t, index_t, 0, 0, 0>(x, f, y, p);
  }
}

}  // namespace

void upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, const UpFirDn2dParams& p) {
  // 32-bit flat indices when idx + grid stride cannot overflow.
  const bool small = y.numel() <= std::numeric_limits<int>::max() / 2;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lsap_upfirdn2d", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (small) {
      launch<scalar_t, acc_t, int>(x, f, y, p);
    } else {
      launch<scalar_t, acc_t, int64_t>(x, f, y, p);
    }
  });
}

}  // namespace lsap
