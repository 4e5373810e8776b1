// Small helpers shared by the lsap CUDA ops.
#pragma once

#include <cstdint>

#define LSAP_CHECK_CUDA(t) TORCH_CHECK((t).is_cuda(), #t " must be a CUDA tensor")
#define LSAP_CHECK_SAME_DEVICE(a, b) \
  TORCH_CHECK((a).device() == (b).device(), #a " and " #b " must be on the same device")

namespace lsap {

constexpr int kThreads = 256;

// Number of blocks for `n` items, capped to keep grid-stride loops busy but bounded.
inline unsigned int blocks_for(int64_t n, int64_t cap = 65535LL * 16) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned int>(blocks);
}

}  // namespace lsap
