// Grouped 3x3 convolution, stride 1, padding 1, no bias, in_channels == out_channels:
// forward, input gradient and weight gradient on channels_last (NHWC) tensors.
//
// Registered as the operators mgspec_gconv::{forward, backward_input, backward_weight, isa}; the
// Python package wraps them in the custom op mgspec::grouped_conv3x3 (autograd, fake tensors).
// Compiled on first use with -march=native, so the vector path is the widest the CPU has:
// AVX-512 (16 lanes), AVX2 + FMA (8 lanes), or the portable scalar loops, which also serve
// float64 and every shape the vector paths do not cover. MGSPEC_GCONV_ISA=avx512|avx2|scalar
// restricts the choice (for measurements and tests).
//
// Vector layout. One vector holds V consecutive output channels of one pixel. With group size
// gs, let R = min(gs, V) and B = max(gs / V, 1). P_r rotates every run of R lanes by r
// (P_r(v)[l] = v[l - l%R + (l%R + r) % R]). Then
//
//     y = sum_r P_r( sum_{tap, b} W'_{tap,b,r} (*) x_{tap,b} )
//
// where x_{tap,b} is the input vector read straight from the NHWC tensor (block b of the
// group's input channels) and W'_{tap,b,r}[m] = w[o][i][tap] with o = the output lane that
// input lane m feeds under rotation r. The inner loop is therefore loads and FMAs only: R
// accumulators per pixel, NP pixels per block (register blocking), and R - 1 permutes per
// output pixel at the end. The input gradient is the same kernel with the group-transposed,
// flipped weights; the weight gradient accumulates P_r^T(dy) (*) x over the batch and the
// image, per thread, then sums the partial results.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

// ------------------------------------------------------------------ vector types

#if defined(__AVX512F__)
struct Avx512 {
  using reg = __m512;
  using idx = __m512i;
  static constexpr int V = 16;
  static constexpr int REGS = 32;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static idx index(const int32_t* p) { return _mm512_loadu_si512(p); }
  static reg permute(reg v, idx i) { return _mm512_permutexvar_ps(i, v); }
};
#endif

#if defined(__AVX2__) && defined(__FMA__)
struct Avx2 {
  using reg = __m256;
  using idx = __m256i;
  static constexpr int V = 8;
  static constexpr int REGS = 16;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static idx index(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static reg permute(reg v, idx i) { return _mm256_permutevar8x32_ps(v, i); }
};
#endif

// Work items per parallel chunk so that a chunk has at least ~256k multiply-adds: small
// problems (batch 1, coarse maps) run on the calling thread instead of paying for a fork/join.
inline int64_t grain(int64_t macs_per_item) {
  constexpr int64_t kChunk = 1 << 18;
  return std::max<int64_t>(1, kChunk / std::max<int64_t>(1, macs_per_item));
}

// ------------------------------------------------------------------ layouts (any vector width)

// First input channel of output vector cb's input block 0.
inline int64_t xbase(int64_t cb, int V, int64_t gs) {
  const int64_t span = std::max<int64_t>(gs, V);
  return cb * V - (cb * V) % span;
}

// The natural weight index (o * gs + i) * 9 + tap of packed entry [cb][tap][b][r][m].
inline int64_t natural_index(int64_t cb, int tap, int b, int r, int m, int V, int64_t gs) {
  const int R = static_cast<int>(std::min<int64_t>(gs, V));
  const int64_t o = cb * V + (m - m % R) + ((m % R - r) % R + R) % R;
  const int64_t i = xbase(cb, V, gs) + static_cast<int64_t>(b) * V + m - (o - o % gs);
  return (o * gs + i) * 9 + tap;
}

// w: natural (C, gs, 3, 3) contiguous -> packed (C/V, 9, B, R, V); inverse when unpack is true.
void repack(float* packed, float* natural, int64_t C, int64_t gs, int V, bool unpack) {
  const int R = static_cast<int>(std::min<int64_t>(gs, V));
  const int B = static_cast<int>(std::max<int64_t>(gs / V, 1));
  int64_t k = 0;
  for (int64_t cb = 0; cb < C / V; cb++)
    for (int tap = 0; tap < 9; tap++)
      for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++)
          for (int m = 0; m < V; m++, k++) {
            const int64_t n = natural_index(cb, tap, b, r, m, V, gs);
            if (unpack) natural[n] = packed[k];
            else packed[k] = natural[n];
          }
}

// Rotation indices: rows r = 0..R-1 of P_r (forward), or of P_r^T = P_{R-r} (transposed).
std::vector<int32_t> rotations(int R, int V, bool transposed) {
  std::vector<int32_t> idx(static_cast<size_t>(R) * V);
  for (int r = 0; r < R; r++) {
    const int s = transposed ? (R - r) % R : r;
    for (int l = 0; l < V; l++) idx[r * V + l] = l - l % R + (l % R + s) % R;
  }
  return idx;
}

// ------------------------------------------------------------------ vector forward

template <class S, int R, int B, int NP, bool EDGE>
inline void fwd_block(const float* const* xrow, const float* wp, const typename S::idx* rot, float* y, int64_t C,
                      int w0, int W) {
  constexpr int V = S::V;
  typename S::reg acc[NP][R];
#pragma GCC unroll 16
  for (int p = 0; p < NP; p++)
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) acc[p][r] = S::zero();
#pragma GCC unroll 3
  for (int kh = 0; kh < 3; kh++) {
    const float* xr = xrow[kh];
    if (!xr) continue;
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; kw++) {
#pragma GCC unroll 4
      for (int b = 0; b < B; b++) {
        typename S::reg xv[NP];
#pragma GCC unroll 16
        for (int p = 0; p < NP; p++) {
          const int iw = w0 + p + kw - 1;
          xv[p] = (EDGE && (iw < 0 || iw >= W)) ? S::zero() : S::load(xr + iw * C + b * V);
        }
        const float* wt = wp + ((kh * 3 + kw) * B + b) * R * V;
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
          const typename S::reg wv = S::load(wt + r * V);
#pragma GCC unroll 16
          for (int p = 0; p < NP; p++) acc[p][r] = S::fma(wv, xv[p], acc[p][r]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < NP; p++) {
    typename S::reg out = acc[p][0];
#pragma GCC unroll 16
    for (int r = 1; r < R; r++) out = S::add(out, S::permute(acc[p][r], rot[r]));
    S::store(y + (w0 + p) * C, out);
  }
}

// n <= NP pixels starting at w0.
template <class S, int R, int B, int NP>
inline void fwd_pixels(int n, bool edge, const float* const* xrow, const float* wp, const typename S::idx* rot,
                       float* y, int64_t C, int w0, int W) {
  if constexpr (NP > 1) {
    if (n < NP) return fwd_pixels<S, R, B, NP - 1>(n, edge, xrow, wp, rot, y, C, w0, W);
  }
  if (edge) fwd_block<S, R, B, NP, true>(xrow, wp, rot, y, C, w0, W);
  else fwd_block<S, R, B, NP, false>(xrow, wp, rot, y, C, w0, W);
}

template <int R, int REGS>
constexpr int pixels_per_block() {
  // NP * R accumulators + NP inputs + 1 weight must fit the register file.
  int np = (REGS - 1) / (R + 1);
  return np < 1 ? 1 : (np > 6 ? 6 : np);
}

template <class S, int R, int B>
void fwd_vector(const float* x, const float* wp, float* y, int64_t N, int64_t C, int64_t gs, int H, int W) {
  constexpr int V = S::V;
  constexpr int NP = pixels_per_block<R, S::REGS>();
  const int64_t CB = C / V;
  const std::vector<int32_t> ridx = rotations(R, V, false);
  typename S::idx rot[R];
  for (int r = 0; r < R; r++) rot[r] = S::index(ridx.data() + r * V);
  at::parallel_for(0, N * H, grain(W * C * gs * 9), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const int64_t n = t / H;
      const int h = static_cast<int>(t % H);
      for (int64_t cb = 0; cb < CB; cb++) {
        const float* xn = x + n * H * W * C + xbase(cb, V, gs);
        const float* xrow[3];
        for (int kh = 0; kh < 3; kh++) {
          const int ih = h + kh - 1;
          xrow[kh] = (ih >= 0 && ih < H) ? xn + static_cast<int64_t>(ih) * W * C : nullptr;
        }
        float* yr = y + (n * H + h) * W * C + cb * V;
        const float* wc = wp + cb * 9 * B * R * V;
        for (int w0 = 0; w0 < W; w0 += NP) {
          const int np = std::min(NP, W - w0);
          fwd_pixels<S, R, B, NP>(np, w0 == 0 || w0 + np >= W, xrow, wc, rot, yr, C, w0, W);
        }
      }
    }
  });
}

// ------------------------------------------------------------------ vector weight gradient

// One input row (block b) against one row of rotated output gradients, taps KW0..KW0+NKW-1.
template <class S, int R, int KW0, int NKW>
inline void wgrad_row(const float* xr, const float* drot, int64_t C, int W, float* dw, int64_t tapstride) {
  constexpr int V = S::V;
  typename S::reg acc[NKW][R];
#pragma GCC unroll 3
  for (int k = 0; k < NKW; k++)
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) acc[k][r] = S::load(dw + (KW0 + k) * tapstride + r * V);
  auto pixel = [&](int p, bool edge) __attribute__((always_inline)) {
    // With registers to spare, the pixel's R rotated gradients stay in registers for all NKW
    // taps; otherwise the FMAs take them from L1 as memory operands.
    constexpr bool in_registers = NKW * R + R + 1 <= S::REGS;
    typename S::reg d[R];
    if constexpr (in_registers) {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) d[r] = S::load(drot + (p * R + r) * V);
    }
#pragma GCC unroll 3
    for (int k = 0; k < NKW; k++) {
      const int iw = p + KW0 + k - 1;
      if (edge && (iw < 0 || iw >= W)) continue;
      const typename S::reg xv = S::load(xr + iw * C);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
        acc[k][r] = S::fma(xv, in_registers ? d[r] : S::load(drot + (p * R + r) * V), acc[k][r]);
    }
  };
  pixel(0, true);
  for (int p = 1; p < W - 1; p++) pixel(p, false);
  if (W > 1) pixel(W - 1, true);
#pragma GCC unroll 3
  for (int k = 0; k < NKW; k++)
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) S::store(dw + (KW0 + k) * tapstride + r * V, acc[k][r]);
}

template <class S, int R, int B>
void bwdw_vector(const float* x, const float* dy, float* dwp, int64_t N, int64_t C, int64_t gs, int H, int W) {
  constexpr int V = S::V;
  const int64_t CB = C / V;
  const int64_t wsize = CB * 9 * B * R * V;
  const int64_t tapstride = B * R * V;
  // Work units are output rows (n, h), all channel blocks inside, so the input rows a unit reads
  // stay in L1 across blocks; every thread sums into its own copy of the (packed) weights.
  const int64_t units = N * H;
  const int64_t chunks = std::max<int64_t>(1, units / grain(static_cast<int64_t>(W) * C * gs * 9));
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), chunks)));
  std::vector<float> partial(static_cast<size_t>(T) * wsize, 0.0f);
  const std::vector<int32_t> ridx = rotations(R, V, true);
  at::parallel_for(0, T, 1, [&](int64_t begin, int64_t end) {
    typename S::idx rot[R];
    for (int r = 0; r < R; r++) rot[r] = S::index(ridx.data() + r * V);
    std::vector<float> drot(static_cast<size_t>(W) * R * V);
    for (int64_t t = begin; t < end; t++) {
      float* dwt = partial.data() + t * wsize;
      for (int64_t u = t * units / T; u < (t + 1) * units / T; u++) {
        const int64_t n = u / H;
        const int h = static_cast<int>(u % H);
        for (int64_t cb = 0; cb < CB; cb++) {
          const float* xn = x + n * H * W * C + xbase(cb, V, gs);
          const float* dyr = dy + (n * H + h) * W * C + cb * V;
          float* dw = dwt + cb * 9 * tapstride;
          for (int p = 0; p < W; p++) {
            const typename S::reg d = S::load(dyr + p * C);
            S::store(drot.data() + (p * R) * V, d);
            for (int r = 1; r < R; r++) S::store(drot.data() + (p * R + r) * V, S::permute(d, rot[r]));
          }
          for (int kh = 0; kh < 3; kh++) {
            const int ih = h + kh - 1;
            if (ih < 0 || ih >= H) continue;
            for (int b = 0; b < B; b++) {
              const float* xr = xn + static_cast<int64_t>(ih) * W * C + b * V;
              float* d = dw + kh * 3 * tapstride + b * R * V;
              if constexpr (3 * R + 2 <= S::REGS) {
                wgrad_row<S, R, 0, 3>(xr, drot.data(), C, W, d, tapstride);
              } else {
                wgrad_row<S, R, 0, 1>(xr, drot.data(), C, W, d, tapstride);
                wgrad_row<S, R, 1, 1>(xr, drot.data(), C, W, d, tapstride);
                wgrad_row<S, R, 2, 1>(xr, drot.data(), C, W, d, tapstride);
              }
            }
          }
        }
      }
    }
  });
  at::parallel_for(0, wsize, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; k++) {
      float s = 0.0f;
      for (int t = 0; t < T; t++) s += partial[t * wsize + k];
      dwp[k] = s;
    }
  });
}

// ------------------------------------------------------------------ scalar reference (any dtype)

template <typename T>
void fwd_scalar(const T* x, const T* w, T* y, int64_t N, int64_t C, int64_t gs, int H, int W) {
  at::parallel_for(0, N * H, grain(W * C * gs * 9), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const int64_t n = t / H;
      const int h = static_cast<int>(t % H);
      for (int w0 = 0; w0 < W; w0++) {
        T* yp = y + ((n * H + h) * W + w0) * C;
        for (int64_t o = 0; o < C; o++) yp[o] = T(0);
        for (int tap = 0; tap < 9; tap++) {
          const int ih = h + tap / 3 - 1, iw = w0 + tap % 3 - 1;
          if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
          const T* xp = x + ((n * H + ih) * W + iw) * C;
          for (int64_t o = 0; o < C; o++) {
            const T* xg = xp + (o - o % gs);
            const T* wo = w + o * gs * 9 + tap;
            T s = T(0);
            for (int64_t i = 0; i < gs; i++) s += wo[i * 9] * xg[i];
            yp[o] += s;
          }
        }
      }
    }
  });
}

template <typename T>
void bwdw_scalar(const T* x, const T* dy, T* dw, int64_t N, int64_t C, int64_t gs, int H, int W) {
  at::parallel_for(0, C, grain(N * H * W * gs * 9), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; o++) {
      const int64_t g0 = o - o % gs;
      for (int64_t i = 0; i < gs; i++)
        for (int tap = 0; tap < 9; tap++) {
          const int dh = tap / 3 - 1, dwd = tap % 3 - 1;
          T s = T(0);
          for (int64_t n = 0; n < N; n++)
            for (int h = std::max(0, -dh); h < std::min(H, H - dh); h++)
              for (int w0 = std::max(0, -dwd); w0 < std::min(W, W - dwd); w0++)
                s += dy[((n * H + h) * W + w0) * C + o] * x[((n * H + h + dh) * W + w0 + dwd) * C + g0 + i];
          dw[(o * gs + i) * 9 + tap] = s;
        }
    }
  });
}

// ------------------------------------------------------------------ dispatch

enum class Isa { Scalar, Avx2, Avx512 };

Isa allowed_isa() {
  const char* env = std::getenv("MGSPEC_GCONV_ISA");
  const std::string want = env ? env : "";
#if defined(__AVX512F__)
  if (want.empty() || want == "avx512") return Isa::Avx512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (want.empty() || want == "avx512" || want == "avx2") return Isa::Avx2;
#endif
  return Isa::Scalar;
}

std::string isa_name() {
  switch (allowed_isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

// Runs the vector kernel `K<S, R, B>` when the shape fits a vector type; false otherwise.
template <template <class, int, int> class K, class... Args>
bool run_vector(int64_t C, int64_t gs, Isa isa, Args... args) {
  (void)C; (void)gs; (void)isa;
  ((void)args, ...);
#if defined(__AVX512F__)
  if (isa == Isa::Avx512 && C % 16 == 0) {
    switch (gs) {
      case 2: K<Avx512, 2, 1>::run(args...); return true;
      case 4: K<Avx512, 4, 1>::run(args...); return true;
      case 8: K<Avx512, 8, 1>::run(args...); return true;
      case 16: K<Avx512, 16, 1>::run(args...); return true;
      default: break;
    }
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (isa != Isa::Scalar && C % 8 == 0) {
    switch (gs) {
      case 2: K<Avx2, 2, 1>::run(args...); return true;
      case 4: K<Avx2, 4, 1>::run(args...); return true;
      case 8: K<Avx2, 8, 1>::run(args...); return true;
      case 16: K<Avx2, 8, 2>::run(args...); return true;
      default: break;
    }
  }
#endif
  return false;
}

template <class S, int R, int B>
struct Forward {
  // natural weights -> packed, then the vector forward
  static void run(const float* x, const float* w, float* y, int64_t N, int64_t C, int64_t gs, int H, int W) {
    std::vector<float> packed(static_cast<size_t>(C) * gs * 9);
    repack(packed.data(), const_cast<float*>(w), C, gs, S::V, false);
    fwd_vector<S, R, B>(x, packed.data(), y, N, C, gs, H, W);
  }
};

template <class S, int R, int B>
struct WeightGrad {
  static void run(const float* x, const float* dy, float* dw, int64_t N, int64_t C, int64_t gs, int H, int W) {
    std::vector<float> packed(static_cast<size_t>(C) * gs * 9);
    bwdw_vector<S, R, B>(x, dy, packed.data(), N, C, gs, H, W);
    repack(packed.data(), dw, C, gs, S::V, true);
  }
};

void check(const at::Tensor& x, const at::Tensor& weight, int64_t groups, const char* what) {
  TORCH_CHECK(x.dim() == 4, what, ": expected a 4-d input, got ", x.dim(), " dimensions");
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(), what, ": CPU tensors only");
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), what, ": input and weight dtypes differ");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, what, ": float32 or float64 only");
  const int64_t C = x.size(1);
  TORCH_CHECK(groups > 0 && C % groups == 0, what, ": ", C, " channels are not divisible into ", groups, " groups");
  const int64_t gs = C / groups;
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == gs && weight.size(2) == 3 &&
                  weight.size(3) == 3,
              what, ": expected a weight of shape (", C, ", ", gs, ", 3, 3), got ", weight.sizes());
}

// w'[g*gs + i][j][kh][kw] = w[g*gs + j][i][2 - kh][2 - kw]: the input gradient's weights.
at::Tensor transpose_flip(const at::Tensor& w, int64_t groups) {
  const int64_t C = w.size(0), gs = w.size(1);
  return w.reshape({groups, gs, gs, 3, 3}).transpose(1, 2).flip({3, 4}).reshape({C, gs, 3, 3}).contiguous();
}

at::Tensor conv(const at::Tensor& input, const at::Tensor& w, int64_t groups) {
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor wc = w.contiguous();
  const int64_t N = x.size(0), C = x.size(1), gs = C / groups;
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  at::Tensor y = at::empty({N, C, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (x.numel() == 0) return y;
  if (x.scalar_type() == at::kFloat) {
    if (run_vector<Forward>(C, gs, allowed_isa(), x.data_ptr<float>(), wc.data_ptr<float>(), y.data_ptr<float>(), N,
                            C, gs, H, W))
      return y;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mgspec_gconv_forward", [&] {
    fwd_scalar<scalar_t>(x.data_ptr<scalar_t>(), wc.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), N, C, gs, H, W);
  });
  return y;
}

}  // namespace

at::Tensor gconv_forward(const at::Tensor& x, const at::Tensor& weight, int64_t groups) {
  check(x, weight, groups, "grouped_conv3x3");
  return conv(x, weight, groups);
}

at::Tensor gconv_backward_input(const at::Tensor& grad_out, const at::Tensor& weight, int64_t groups) {
  check(grad_out, weight, groups, "grouped_conv3x3 backward_input");
  return conv(grad_out, transpose_flip(weight, groups), groups);
}

at::Tensor gconv_backward_weight(const at::Tensor& input, const at::Tensor& grad_out, int64_t groups) {
  TORCH_CHECK(input.sizes() == grad_out.sizes(), "grouped_conv3x3 backward_weight: input and gradient shapes differ");
  TORCH_CHECK(input.scalar_type() == grad_out.scalar_type(), "grouped_conv3x3 backward_weight: dtypes differ");
  const int64_t C = input.size(1);
  TORCH_CHECK(groups > 0 && C % groups == 0, "grouped_conv3x3 backward_weight: bad groups");
  const int64_t gs = C / groups;
  check(input, at::empty({C, gs, 3, 3}, input.options()), groups, "grouped_conv3x3 backward_weight");
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor dy = grad_out.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0);
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  at::Tensor dw = at::zeros({C, gs, 3, 3}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (x.numel() == 0) return dw;
  if (x.scalar_type() == at::kFloat) {
    if (run_vector<WeightGrad>(C, gs, allowed_isa(), x.data_ptr<float>(), dy.data_ptr<float>(),
                               dw.data_ptr<float>(), N, C, gs, H, W))
      return dw;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mgspec_gconv_backward_weight", [&] {
    bwdw_scalar<scalar_t>(x.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), N, C, gs, H, W);
  });
  return dw;
}

std::string gconv_isa() { return isa_name(); }

TORCH_LIBRARY(mgspec_gconv, m) {
  m.def("forward(Tensor x, Tensor weight, int groups) -> Tensor");
  m.def("backward_input(Tensor grad_out, Tensor weight, int groups) -> Tensor");
  m.def("backward_weight(Tensor x, Tensor grad_out, int groups) -> Tensor");
  m.def("isa() -> str", &gconv_isa);
}

TORCH_LIBRARY_IMPL(mgspec_gconv, CPU, m) {
  m.impl("forward", &gconv_forward);
  m.impl("backward_input", &gconv_backward_input);
  m.impl("backward_weight", &gconv_backward_weight);
}
