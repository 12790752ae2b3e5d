/*
 * k_conv.c -- 2-D convolution (PyTorch nn.Conv2d: zero padding, dilation 1, groups, optional bias)
 * on CNHW activations.
 *
 * As matrices, for group g over the whole batch (K = cin/G * kh * kw, P = N*Ho*Wo):
 *     forward   Y_g (cout/G, P) = W_g (cout/G, K) x col_g (K, P)
 *     backward  dW_g += dY_g col_g^T,   dx_g += col2im(W_g^T dY_g)
 * Three ways to run them, chosen per layer:
 *  1. Implicit GEMM (AVX-512 or AVX2+FMA; equal strides s, wo == ceil(w/s), 16 | Ho*Wo; every resnet conv):
 *     col is never written.  Each k = (c, ki, kj) row of col is x (stride 1) or one of its s*s
 *     phase planes (stride s) shifted by a fixed offset, read with masked loads that zero the
 *     padding.  Forward: per tile of 48 positions, blocks of 64 such rows are copied into an
 *     L1 sliver (conv_s1_fwd), then every block of 8 output channels runs over it in 24 zmm
 *     accumulators.  Backward-data is the same kernel run on dY (the adjoint of a conv is a conv
 *     with negated tap offsets), per phase plane of dx: no col2im.  dW: dot products over
 *     positions (conv_s1_dw), or with many rows a packed GEMM over positions (gemm_nt_packed).
 *  2. Explicit im2col in L2-sized chunks of output rows + the packed GEMMs below (any other
 *     shape, e.g. vgg's 2x2 maps).  1x1 stride-1 unpadded convolutions use x as col.
 *  3. Without AVX-512 and AVX2+FMA (or with -DXB_CONV_NO_SIMD): explicit im2col + CBLAS sgemm.
 * Paths 1 and 2 exist twice, for AVX-512 (16-float vectors, 32 registers) and for AVX2+FMA (8-float
 * vectors, 16 registers: the 8 x 48 tile runs as four 4 x 24 sub-tiles, the dW tiles hold 4 x 3
 * accumulators, 16x16 transposes are four 8x8 ones).  The drivers (blocking, slivers, threads, tap
 * tables) are shared; the positions still go in vectors of 16 with 16-bit tap masks, which AVX2
 * splits into two halves.  xb_conv2d_isa() says which one a build runs.
 * Every product sums at most XB_CONV_KBLOCK terms in a register before adding them to a running
 * sum (accuracy: see conv_s1_fwd).
 * Measured with bench/bench_kernels.c (1 core, batch 128; docs/performance.md): on AVX-512 (Sapphire
 * Rapids) resnet20 and vgg11 convs at about 35-80% of the FMA peak measured in the same run
 * (3-channel first layers and stride-2 layers lowest); OpenBLAS 0.3.21 (which on that CPU falls back
 * to its Haswell kernels) reached 25-50% on the same GEMMs.  On AVX2 (Zen 3) resnet20's forward
 * convs at about 40-60%, where im2col + OpenBLAS reached 15-45%.
 *
 * Threads: every output element (y, dx, dW, or a col/col2im element) is owned by one OpenMP
 * iteration and accumulated in a fixed order, so results do not depend on the thread count (path 3
 * excepted: there the GEMMs run on OpenBLAS's threads).  Not here: dilation, padding modes other
 * than zeros, transposed convolution as a layer.
 */
#include "xbar.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__) && !defined(XB_CONV_NO_SIMD)
#define XB_CONV_SIMD 1
#define XB_CONV_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && !defined(XB_CONV_NO_SIMD)
#define XB_CONV_SIMD 1
#define XB_CONV_AVX2 1
#endif

/* Target size of one column chunk in floats (1 MiB: half the L2 of the cores we tune for). */
#ifndef XB_CONV_CHUNK_FLOATS
#define XB_CONV_CHUNK_FLOATS (256 * 1024)
#endif
/* Most products the implicit kernel sums in one register before adding them to its running sum
 * (accuracy: see conv_s1_fwd). */
#ifndef XB_CONV_KBLOCK
#define XB_CONV_KBLOCK 64
#endif
/* Rows (output channels of dW) from which dW runs as the packed GEMM gemm_nt_packed (with AVX2 the
 * dot-product kernels hold fewer accumulators, so packing pays from 32 rows on). */
#ifndef XB_CONV_PACK_MIN_M
#ifdef XB_CONV_AVX2
#define XB_CONV_PACK_MIN_M 32
#else
#define XB_CONV_PACK_MIN_M 64
#endif
#endif
/* Positions per block of the packed dW GEMM (a multiple of 64), and the least K it is used for. */
#ifndef XB_CONV_DW_PBLOCK
#define XB_CONV_DW_PBLOCK 256
#endif
#ifndef XB_CONV_DW_PACK_MIN_K
#define XB_CONV_DW_PACK_MIN_K 96
#endif
/* gemm_pk's blocks: panels of 48 columns per B group, rows per A block (a C block of 512 x 384
 * floats, 768 KiB, stays in L2 across the k blocks).  The explicit path's column chunks hold at
 * least one such group. */
#ifndef XB_CONV_PK_NG
#define XB_CONV_PK_NG 8
#endif
#ifndef XB_CONV_PK_MC
#define XB_CONV_PK_MC 512
#endif
/* Positions (in vectors of 16) per dW chunk of the implicit path: 4 rows of dY stay in L1. */
#ifndef XB_CONV_DW_CHUNK_VECS
#define XB_CONV_DW_CHUNK_VECS 128
#endif

/* ---- register-blocked SGEMM kernels for the explicit path (AVX-512; AVX2 below) ----------------
 * OpenBLAS is slow on the conv shapes (few rows: cout = 16..64) and, in the Debian build, may not
 * even pick its AVX-512 kernels for newer CPUs.  Three small GEMMs cover the explicit path:
 *  - gemm_pk: C (M x N) [+]= A (M x K) B (K x N), A pre-packed in blocks of 8 rows (k-major, so one
 *    k step broadcasts 8 consecutive floats), B copied in L1 slivers of 64 x 48.  Tile 8 x 48 in
 *    24 zmm accumulators (ukr_p).  Used for Y = W col (forward) and dcol = W^T dY (backward).
 *  - gemm_nt: C (M x N) += A (M x P) B (N x P)^T as dot products over P, tile 8 x 3 in 24 zmm
 *    accumulators, reduced once per tile.  Used for dW += dY col^T with few rows; with many,
 *    gemm_nt_packed (transposed operands, ukr_p) instead.
 * Each C element is owned by one tile and computed in a fixed order, so results do not depend on
 * the thread count. */

const char *xb_conv2d_isa(void) {
#if defined(XB_CONV_AVX512)
    return "avx512";
#elif defined(XB_CONV_AVX2)
    return "avx2";
#else
    return "cblas";
#endif
}

#ifdef XB_CONV_SIMD
#include <immintrin.h>

#define PK_MR 8

/* out[r] = row i0 + r of A (r < n), rows past the last (M - 1) clamped to it: valid memory whose
 * results the caller drops */
static inline void rows_clamped(const float **out, int n, const float *A, int64_t lda, int i0, int M) {
    for (int r = 0; r < n; r++) out[r] = A + (int64_t)(i0 + r < M ? i0 + r : M - 1) * lda;
}

/* Positions go in vectors of 16 on both instruction sets (tap masks are 16 bits; AVX2 splits each
 * vector in two halves of 8).  Lanes i with a <= i < b: */
static inline uint16_t range_mask(int a, int b) {
    if (a < 0) a = 0;
    if (b > 16) b = 16;
    if (b <= a) return 0;
    return (uint16_t)(((1u << b) - 1) & ~((1u << a) - 1));
}
#endif

#ifdef XB_CONV_AVX512
/* x < 0 ? 0 : x per lane, as xb_relu_forward (NaN and -0 pass through) */
static inline __m512 relu_ps(__m512 v) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
}

/* dst[0..15] (64-byte aligned) = the 16 floats at src, 0 in the lanes not in m */
static inline void sliver16(float *dst, uint16_t m, const float *src) {
    _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m, src));
}

/* Ap[ib][k][r] = A[(ib*8 + r)*lda + k], zero rows past M.  (A row-major M x K.)  Full blocks go
 * 16 k at a time through an 8 x 16 register transpose. */
static void pack_rows(int M, int K, const float *A, int64_t lda, float *Ap) {
    const int nb = (M + PK_MR - 1) / PK_MR;
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i lo64 = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), hi64 = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    const __m512i lo128 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), hi128 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for (int ib = 0; ib < nb; ib++) {
        float *dst = Ap + (int64_t)ib * K * PK_MR;
        const float *src = A + (int64_t)ib * PK_MR * lda;
        int k = 0;
        if (ib * PK_MR + PK_MR <= M)
            for (; k + 16 <= K; k += 16) {
                __m512 r[8], t[8];
                for (int i = 0; i < 8; i++) r[i] = _mm512_loadu_ps(src + i * lda + k);
                /* interleave rows pairwise, then pairs of pairs: out[k][r] = r-th row's k-th value */
                for (int i = 0; i < 4; i++) {
                    t[2 * i] = _mm512_permutex2var_ps(r[2 * i], lo, r[2 * i + 1]);     /* k 0..7  of rows 2i,2i+1 */
                    t[2 * i + 1] = _mm512_permutex2var_ps(r[2 * i], hi, r[2 * i + 1]); /* k 8..15 */
                }
                for (int i = 0; i < 2; i++)
                    for (int h = 0; h < 2; h++) {
                        __m512d a = _mm512_castps_pd(t[4 * i + h]), b = _mm512_castps_pd(t[4 * i + 2 + h]);
                        r[4 * i + 2 * h] = _mm512_castpd_ps(_mm512_permutex2var_pd(a, lo64, b));
                        r[4 * i + 2 * h + 1] = _mm512_castpd_ps(_mm512_permutex2var_pd(a, hi64, b));
                    }
                for (int h = 0; h < 4; h++) {
                    __m512i a = _mm512_castps_si512(r[h]), b = _mm512_castps_si512(r[4 + h]);
                    _mm512_storeu_ps(dst + (int64_t)(k + 4 * h) * PK_MR,
                                     _mm512_castsi512_ps(_mm512_permutex2var_epi64(a, lo128, b)));
                    _mm512_storeu_ps(dst + (int64_t)(k + 4 * h + 2) * PK_MR,
                                     _mm512_castsi512_ps(_mm512_permutex2var_epi64(a, hi128, b)));
                }
            }
        for (; k < K; k++)
            for (int r = 0; r < PK_MR; r++)
                dst[(int64_t)k * PK_MR + r] = ib * PK_MR + r < M ? src[(int64_t)r * lda + k] : 0.0f;
    }
}

#endif /* XB_CONV_AVX512 */

#ifdef XB_CONV_AVX2
/* AVX2 + FMA (e.g. AMD Zen 2/3, Intel Haswell to Alder Lake): the same algorithms and blockings on
 * 8-float vectors and 16 registers.  Each vector of 16 positions is two halves of 8; masked loads
 * use vmaskmovps, which (like AVX-512's masked loads) does not touch the lanes it skips. */

/* the 8 lanes of m8's low byte as a vmaskmovps mask */
static inline __m256i lanes8(unsigned m8) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m8), bits), bits);
}

/* the 8 floats at p in the lanes of m8's low byte, 0 elsewhere */
static inline __m256 maskz_load8(unsigned m8, const float *p) {
    m8 &= 0xffu;
    if (m8 == 0xffu) return _mm256_loadu_ps(p);
    if (m8 == 0) return _mm256_setzero_ps();
    return _mm256_maskload_ps(p, lanes8(m8));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* x < 0 ? 0 : x per lane, as xb_relu_forward (NaN and -0 pass through) */
static inline __m256 relu8(__m256 v) {
    return _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
}

/* dst[0..15] (32-byte aligned) = the 16 floats at src, 0 in the lanes not in m */
static inline void sliver16(float *dst, uint16_t m, const float *src) {
    if (m == 0xffffu) { /* the common case: no padding under these 16 positions */
        _mm256_store_ps(dst, _mm256_loadu_ps(src));
        _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
        return;
    }
    _mm256_store_ps(dst, maskz_load8(m, src));
    _mm256_store_ps(dst + 8, maskz_load8((unsigned)m >> 8, src + 8));
}

/* Ap[ib][k][r] = A[(ib*8 + r)*lda + k], zero rows past M.  (A row-major M x K; weights only.) */
static void pack_rows(int M, int K, const float *A, int64_t lda, float *Ap) {
    const int nb = (M + PK_MR - 1) / PK_MR;
    for (int ib = 0; ib < nb; ib++) {
        float *dst = Ap + (int64_t)ib * K * PK_MR;
        const float *src = A + (int64_t)ib * PK_MR * lda;
        for (int k = 0; k < K; k++)
            for (int r = 0; r < PK_MR; r++)
                dst[(int64_t)k * PK_MR + r] = ib * PK_MR + r < M ? src[(int64_t)r * lda + k] : 0.0f;
    }
}
#endif /* XB_CONV_AVX2 */

#ifdef XB_CONV_SIMD
/* Packs A = W^T where W is (K x M) row-major (ldw): Ap[ib][k][r] = W[k*ldw + ib*8 + r]. */
static void pack_cols(int M, int K, const float *W, int64_t ldw, float *Ap) {
    const int nb = (M + PK_MR - 1) / PK_MR;
    for (int ib = 0; ib < nb; ib++) {
        float *dst = Ap + (int64_t)ib * K * PK_MR;
        const int full = ib * PK_MR + PK_MR <= M;
        for (int k = 0; k < K; k++) {
            const float *src = W + (int64_t)k * ldw + ib * PK_MR;
            if (full) _mm256_storeu_ps(dst + (int64_t)k * PK_MR, _mm256_loadu_ps(src));
            else
                for (int r = 0; r < PK_MR; r++) dst[(int64_t)k * PK_MR + r] = ib * PK_MR + r < M ? src[r] : 0.0f;
        }
    }
}

static void ukr_p_full(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu);
static void ukr_p_edge(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu, int mr, int nc);

/* This thread's share [lo, hi) of n tiles in an OpenMP parallel region: contiguous, fixed by the
 * thread count alone (so each tile's work is the same whichever thread runs it). */
static void thread_range(int n, int *lo, int *hi) {
    int nth = 1, me = 0;
#ifdef _OPENMP
    nth = omp_get_num_threads();
    me = omp_get_thread_num();
#endif
    *lo = (int)((int64_t)n * me / nth);
    *hi = (int)((int64_t)n * (me + 1) / nth);
}

/* C (M x N, ldc) [+]= A (M x K, packed by pack_rows) B (K x N, ldb) on ukr_p.
 * Blocking (GotoBLAS-like): each thread owns a contiguous range of 48-column panels and takes them
 * XB_CONV_PK_NG at a time; per group and block of XB_CONV_PK_MC rows, every XB_CONV_KBLOCK-deep k
 * block packs the group's B slivers (L2, each L1-sized) once and runs all row blocks over them,
 * panel by panel, so the A block (rows x KBLOCK, L2) is reused by the whole group instead of
 * streaming all of A from memory once per panel (vgg's 2x2 layers: A = 512 x 4608).  Every C
 * element still adds its k blocks in ascending order: the bits do not depend on the blocking or
 * on the thread count.  relu: the last k block stores relu(C) (xb_conv2d_relu_forward). */
static void gemm_pk(int M, int64_t N, int K, const float *Ap, const float *B, int64_t ldb, float *C,
                    int64_t ldc, int acc, int relu) {
    enum { NG = XB_CONV_PK_NG, MCB = XB_CONV_PK_MC / PK_MR };
    const int nmb = (M + PK_MR - 1) / PK_MR, npb = (int)((N + 47) / 48);
#pragma omp parallel
    {
        float bp[NG * XB_CONV_KBLOCK * 48] __attribute__((aligned(64)));
        int lo, hi;
        thread_range(npb, &lo, &hi);
        for (int g0 = lo; g0 < hi; g0 += NG) {
            const int ng = hi - g0 < NG ? hi - g0 : NG;
            for (int m0 = 0; m0 < nmb; m0 += MCB) {
                const int m1 = nmb - m0 < MCB ? nmb : m0 + MCB;
                for (int k0 = 0; k0 < K; k0 += XB_CONV_KBLOCK) {
                    const int kc = K - k0 < XB_CONV_KBLOCK ? K - k0 : XB_CONV_KBLOCK;
                    const int load = acc || k0 > 0, rl = relu && k0 + kc == K;
                    for (int jj = 0; jj < ng; jj++) {
                        const int64_t j0 = (int64_t)(g0 + jj) * 48;
                        const int nc = N - j0 < 48 ? (int)(N - j0) : 48;
                        const uint16_t m0m = range_mask(0, nc), m1m = range_mask(0, nc - 16),
                                       m2m = range_mask(0, nc - 32);
                        float *bj = bp + (int64_t)jj * XB_CONV_KBLOCK * 48;
                        for (int kk = 0; kk < kc; kk++) {
                            const float *br = B + (int64_t)(k0 + kk) * ldb + j0;
                            sliver16(bj + kk * 48, m0m, br);
                            sliver16(bj + kk * 48 + 16, m1m, br + 16);
                            sliver16(bj + kk * 48 + 32, m2m, br + 32);
                        }
                    }
                    for (int jj = 0; jj < ng; jj++) {
                        const int64_t j0 = (int64_t)(g0 + jj) * 48;
                        const int nc = N - j0 < 48 ? (int)(N - j0) : 48;
                        const float *bj = bp + (int64_t)jj * XB_CONV_KBLOCK * 48;
                        for (int ib = m0; ib < m1; ib++) {
                            const int mr = M - ib * PK_MR < PK_MR ? M - ib * PK_MR : PK_MR;
                            const float *a = Ap + ((int64_t)ib * K + k0) * PK_MR;
                            float *c = C + (int64_t)ib * PK_MR * ldc + j0;
                            if (mr == PK_MR && nc == 48) ukr_p_full(kc, a, bj, c, ldc, c, ldc, NULL, load, rl);
                            else ukr_p_edge(kc, a, bj, c, ldc, c, ldc, NULL, load, rl, mr, nc);
                        }
                    }
                }
            }
        }
    }
}

#ifdef XB_CONV_AVX512
#define NT_MR 8
#define NT_NR 3

/* C (M x N, ldc) += A (M x P, lda) * B (N x P, ldb)^T.  Rows past the edge are clamped to the last
 * row (valid memory) and their results dropped. */
static void gemm_nt(int M, int N, int64_t P, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc) {
    const int nmb = (M + NT_MR - 1) / NT_MR, nnb = (N + NT_NR - 1) / NT_NR;
    const int64_t pv = P / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (P - pv)) - 1);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < nmb * nnb; t++) {
        int ib = t / nnb, jb = t % nnb;
        const float *ar[NT_MR], *br[NT_NR];
        rows_clamped(ar, NT_MR, A, lda, ib * NT_MR, M);
        rows_clamped(br, NT_NR, B, ldb, jb * NT_NR, N);
        __m512 acc[NT_MR][NT_NR];
        for (int r = 0; r < NT_MR; r++)
            for (int s = 0; s < NT_NR; s++) acc[r][s] = _mm512_setzero_ps();
        for (int64_t p = 0; p < pv; p += 16) {
            __m512 bv[NT_NR];
            for (int s = 0; s < NT_NR; s++) bv[s] = _mm512_loadu_ps(br[s] + p);
            for (int r = 0; r < NT_MR; r++) {
                __m512 av = _mm512_loadu_ps(ar[r] + p);
                for (int s = 0; s < NT_NR; s++) acc[r][s] = _mm512_fmadd_ps(av, bv[s], acc[r][s]);
            }
        }
        if (pv < P) {
            __m512 bv[NT_NR];
            for (int s = 0; s < NT_NR; s++) bv[s] = _mm512_maskz_loadu_ps(tail, br[s] + pv);
            for (int r = 0; r < NT_MR; r++) {
                __m512 av = _mm512_maskz_loadu_ps(tail, ar[r] + pv);
                for (int s = 0; s < NT_NR; s++) acc[r][s] = _mm512_fmadd_ps(av, bv[s], acc[r][s]);
            }
        }
        for (int r = 0; r < NT_MR; r++) {
            int i = ib * NT_MR + r;
            if (i >= M) break;
            for (int s = 0; s < NT_NR; s++) {
                int j = jb * NT_NR + s;
                if (j < N) C[(int64_t)i * ldc + j] += _mm512_reduce_add_ps(acc[r][s]);
            }
        }
    }
}

#elif defined(XB_CONV_AVX2)
#define NT_MR 4
#define NT_NR 3

/* C (M x N, ldc) += A (M x P, lda) * B (N x P, ldb)^T: dot products over P, tile 4 x 3 in 12 ymm
 * accumulators.  Rows past the edge are clamped to the last row and their results dropped. */
static void gemm_nt(int M, int N, int64_t P, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc) {
    const int nmb = (M + NT_MR - 1) / NT_MR, nnb = (N + NT_NR - 1) / NT_NR;
    const int64_t pv = P / 8 * 8;
    const unsigned tail = (1u << (P - pv)) - 1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < nmb * nnb; t++) {
        int ib = t / nnb, jb = t % nnb;
        const float *ar[NT_MR], *br[NT_NR];
        rows_clamped(ar, NT_MR, A, lda, ib * NT_MR, M);
        rows_clamped(br, NT_NR, B, ldb, jb * NT_NR, N);
        __m256 acc[NT_MR][NT_NR];
        for (int r = 0; r < NT_MR; r++)
            for (int s = 0; s < NT_NR; s++) acc[r][s] = _mm256_setzero_ps();
        for (int64_t p = 0; p <= pv; p += 8) {
            if (p == pv && !tail) break;
            const unsigned m = p < pv ? 0xffu : tail;
            __m256 bv[NT_NR];
            for (int s = 0; s < NT_NR; s++) bv[s] = maskz_load8(m, br[s] + p);
            for (int r = 0; r < NT_MR; r++) {
                __m256 av = maskz_load8(m, ar[r] + p);
                for (int s = 0; s < NT_NR; s++) acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
            }
        }
        for (int r = 0; r < NT_MR; r++) {
            int i = ib * NT_MR + r;
            if (i >= M) break;
            for (int s = 0; s < NT_NR; s++) {
                int j = jb * NT_NR + s;
                if (j < N) C[(int64_t)i * ldc + j] += hsum8(acc[r][s]);
            }
        }
    }
}
#endif /* gemm_nt */

/* ---- implicit GEMM ------------------------------------------------------------------------------
 * An implicit conv reads its B operand straight from the input planes: output position p of an
 * image (p = oh*ow_ + ow, in vectors of 16) and tap t read input index p + toff[t] of the same
 * image (so the input plane's row stride must equal the output's: iw_ == ow_), from channel c at
 * + c*cst, where mtab[p/16][t] has the lane's bit set (zero padding otherwise).  Three uses:
 *  - forward of a stride-1 conv with wo == w: taps (ki, kj) at offset (ki-ph)*w + kj-pw;
 *  - forward of a stride-s conv with wo == ceil(w/s): x is first split into s*s phase planes
 *    (x[c, s*i+a, s*j+b] -> plane (a, b)), after which tap (ki, kj) is an unstrided shift inside
 *    plane ((ki-ph) mod s, (kj-pw) mod s);
 *  - backward-data: the adjoint of the above is again an implicit conv, from dY to x (or to each
 *    phase plane of dx, with the taps of that phase), with negated offsets.
 * dW is a dot product over positions of dY with the same shifted inputs. */
typedef struct tap_geom {
    int T, kw, vpi;      /* taps (T = kh*kw in the forward geometry); output vectors per image */
    int64_t in_img, cst; /* input image stride, input channel stride */
    int64_t *toff;       /* (T) */
    int64_t tmax;        /* largest toff (prefetch_tile) */
    uint16_t *mtab;      /* (vpi, T) */
} tap_geom;

/* Software prefetch of the input a tile of 3 output vectors starting at vector v0 will read last:
 * per channel, the lines under its vectors at the largest tap offset (the smaller offsets were
 * mostly fetched for the tile before).  The implicit kernels read B in place (or pack it) from up to
 * hundreds of channel planes at once, a pattern the hardware prefetchers do not follow once the
 * activations have left L3 (in a training step they have: +45% on 32x16x16 layers without it). */
static inline void prefetch_tile(const tap_geom *gm, const float *x, int64_t nv, int64_t v0, int C) {
    const int64_t tmax = gm->tmax;
    for (int j = 0; j < 3 && v0 + j < nv; j++) {
        const int64_t v = v0 + j;
        const char *p = (const char *)(x + (v / gm->vpi) * gm->in_img + (v % gm->vpi) * 16 + tmax);
        for (int ci = 0; ci < C; ci++, p += gm->cst * (int64_t)sizeof(float)) {
            _mm_prefetch(p, _MM_HINT_T0);
            _mm_prefetch(p + 60, _MM_HINT_T0);
        }
    }
}

/* ... and of the M output rows the next tile (at position p0 of each row) will write or add into,
 * with write intent, so that its stores find their lines in cache. */
static inline void prefetch_out(const float *y, int64_t ldy, int M, int64_t p0, int64_t np) {
    if (p0 >= np) return;
    for (int r = 0; r < M; r++)
        for (int j = 0; j < 48 && p0 + j < np; j += 16) __builtin_prefetch(y + r * ldy + p0 + j, 1, 3);
}

/* The tile of (up to) 3 output vectors from v0 of nv: input base xb[j] and mask row mk[j] of each
 * (a missing vector repeats the first), prefetches for the next tile; returns the vector count. */
static inline int tile_begin(const tap_geom *gm, const float *x, int64_t nv, int64_t v0, int C, const float *y,
                             int64_t ldy, int M, const float **xb, const uint16_t **mk) {
    const int cnt = nv - v0 < 3 ? (int)(nv - v0) : 3;
    for (int j = 0; j < 3; j++) {
        const int64_t v = v0 + (j < cnt ? j : 0);
        xb[j] = x + (v / gm->vpi) * gm->in_img + (v % gm->vpi) * 16;
        mk[j] = gm->mtab + (v % gm->vpi) * gm->T;
    }
    prefetch_tile(gm, x, nv, v0 + 3, C);
    prefetch_out(y, ldy, M, (v0 + 3) * 16, nv * 16);
    return cnt;
}

/* The tap (of the T) and the input offset of the n consecutive k = c*T + t from k0 (k past K - 1
 * clamped to it: valid memory whose results the dW tiles drop). */
static inline void dw_taps(const tap_geom *gm, int K, int k0, int n, int *tap, int64_t *xoff) {
    for (int s = 0; s < n; s++) {
        const int k = k0 + s < K ? k0 + s : K - 1;
        tap[s] = k % gm->T;
        xoff[s] = (int64_t)(k / gm->T) * gm->cst + gm->toff[k % gm->T];
    }
}

static int floordiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Tap table of the forward (adj = 0: input x or its phase planes) or of the adjoint for phase
 * plane `phase` (adj = 1: input dY, output the (phase of the) input plane).  tapidx receives the
 * kernel index (ki*kw + kj) of each selected tap; returns their number. */
static int taps_build(tap_geom *gm, const xb_conv2d_desc *d, int n, int adj, int phase, int32_t *tapidx,
                      int64_t *toff, uint16_t *mtab) {
    const int s = d->sh, hp = (d->h + s - 1) / s, wp = (d->w + s - 1) / s;
    const int ih_ = adj ? d->ho : hp, iw_ = adj ? d->wo : wp, oh_ = adj ? hp : d->ho, ow_ = adj ? wp : d->wo;
    const int64_t phase_stride = (int64_t)(d->cin / d->groups) * n * hp * wp;
    int T = 0;
    int dr[64], dc[64]; /* kept small: taps beyond 64 use the explicit path (see use_implicit) */
    for (int ki = 0; ki < d->kh; ki++)
        for (int kj = 0; kj < d->kw; kj++) {
            int r = floordiv(ki - d->ph, s), c = floordiv(kj - d->pw, s);
            int a = ki - d->ph - r * s, b = kj - d->pw - c * s;
            if (adj && a * s + b != phase) continue;
            tapidx[T] = ki * d->kw + kj;
            dr[T] = adj ? -r : r;
            dc[T] = adj ? -c : c;
            toff[T] = (adj ? 0 : (int64_t)(a * s + b) * phase_stride) + (int64_t)dr[T] * iw_ + dc[T];
            T++;
        }
    gm->T = T;
    gm->kw = d->kw;
    gm->vpi = oh_ * ow_ / 16;
    gm->in_img = (int64_t)ih_ * iw_;
    gm->cst = (int64_t)n * ih_ * iw_;
    gm->toff = toff;
    gm->tmax = 0;
    for (int t = 0; t < T; t++) gm->tmax = t == 0 || toff[t] > gm->tmax ? toff[t] : gm->tmax;
    gm->mtab = mtab;
    for (int vi = 0; vi < gm->vpi; vi++)
        for (int t = 0; t < T; t++) {
            unsigned m = 0;
            for (int l = 0; l < 16; l++) {
                int p = vi * 16 + l, r = p / ow_ + dr[t], c = p % ow_ + dc[t];
                if (r >= 0 && r < ih_ && c >= 0 && c < iw_) m |= 1u << l;
            }
            mtab[(int64_t)vi * T + t] = (uint16_t)m;
        }
    return T;
}

/* x (C, n, h, w) -> phase planes (s*s, C, n, hp, wp), zero where s*i+a >= h or s*j+b >= w. */
static void phase_split(int C, int n, int h, int w, int s, const float *x, float *xph) {
    const int hp = (h + s - 1) / s, wp = (w + s - 1) / s;
    const int64_t plane = (int64_t)hp * wp, pst = (int64_t)C * n * plane;
#ifdef XB_CONV_AVX512
    if (s == 2 && h % 2 == 0 && w % 2 == 0) { /* de-interleave 32 floats into 16 even + 16 odd */
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < (int64_t)C * n * h; row++) { /* one input row (c, nn, r) */
            int64_t img = row / h;
            int r = (int)(row % h);
            const float *src = x + row * w;
            float *de = xph + ((r & 1) * 2) * pst + img * plane + (int64_t)(r >> 1) * wp;
            float *dod = de + pst;
            for (int j = 0; j < wp; j += 16) {
                __mmask16 m = range_mask(0, wp - j);
                __m512 lo = _mm512_maskz_loadu_ps(range_mask(0, w - 2 * j), src + 2 * j);
                __m512 hi = _mm512_maskz_loadu_ps(range_mask(0, w - 2 * j - 16), src + 2 * j + 16);
                _mm512_mask_storeu_ps(de + j, m, _mm512_permutex2var_ps(lo, even, hi));
                _mm512_mask_storeu_ps(dod + j, m, _mm512_permutex2var_ps(lo, odd, hi));
            }
        }
        return;
    }
#else
    if (s == 2 && h % 2 == 0 && w % 2 == 0) { /* one input row at a time, into its even and odd planes */
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < (int64_t)C * n * h; row++) {
            const int64_t img = row / h;
            const int r = (int)(row % h);
            const float *src = x + row * w;
            float *de = xph + ((r & 1) * 2) * pst + img * plane + (int64_t)(r >> 1) * wp, *dod = de + pst;
            for (int j = 0; j < wp; j++) {
                de[j] = src[2 * j];
                dod[j] = src[2 * j + 1];
            }
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int nn = 0; nn < n; nn++) {
            const float *xi = x + ((int64_t)c * n + nn) * h * w;
            for (int a = 0; a < s; a++)
                for (int b = 0; b < s; b++) {
                    float *dst = xph + (a * s + b) * pst + ((int64_t)c * n + nn) * plane;
                    for (int i = 0; i < hp; i++)
                        for (int j = 0; j < wp; j++) {
                            int r = s * i + a, q = s * j + b;
                            dst[i * wp + j] = (r < h && q < w) ? xi[r * w + q] : 0.0f;
                        }
                }
        }
}

/* dx (C, n, h, w) [+]= the phase planes dxph (s*s, C, n, hp, wp) put back in place (acc: add). */
static void phase_merge(int C, int n, int h, int w, int s, const float *dxph, float *dx, int acc) {
    const int hp = (h + s - 1) / s, wp = (w + s - 1) / s;
    const int64_t plane = (int64_t)hp * wp, pst = (int64_t)C * n * plane;
#ifdef XB_CONV_AVX512
    if (s == 2 && h % 2 == 0 && w % 2 == 0) { /* interleave 16 even + 16 odd into 32 floats */
        const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < (int64_t)C * n * h; row++) {
            int64_t img = row / h;
            int r = (int)(row % h);
            float *dst = dx + row * w;
            const float *se = dxph + ((r & 1) * 2) * pst + img * plane + (int64_t)(r >> 1) * wp;
            const float *so = se + pst;
            for (int j = 0; j < wp; j += 16) {
                __mmask16 m = range_mask(0, wp - j);
                __m512 e = _mm512_maskz_loadu_ps(m, se + j), o = _mm512_maskz_loadu_ps(m, so + j);
                __mmask16 m0 = range_mask(0, w - 2 * j), m1 = range_mask(0, w - 2 * j - 16);
                __m512 a0 = _mm512_permutex2var_ps(e, lo_idx, o), a1 = _mm512_permutex2var_ps(e, hi_idx, o);
                if (acc) {
                    a0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, dst + 2 * j), a0);
                    a1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, dst + 2 * j + 16), a1);
                }
                _mm512_mask_storeu_ps(dst + 2 * j, m0, a0);
                _mm512_mask_storeu_ps(dst + 2 * j + 16, m1, a1);
            }
        }
        return;
    }
#else
    if (s == 2 && h % 2 == 0 && w % 2 == 0) { /* one output row at a time, from its even and odd planes */
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < (int64_t)C * n * h; row++) {
            const int64_t img = row / h;
            const int r = (int)(row % h);
            float *dst = dx + row * w;
            const float *se = dxph + ((r & 1) * 2) * pst + img * plane + (int64_t)(r >> 1) * wp, *so = se + pst;
            if (acc)
                for (int j = 0; j < wp; j++) {
                    dst[2 * j] += se[j];
                    dst[2 * j + 1] += so[j];
                }
            else
                for (int j = 0; j < wp; j++) {
                    dst[2 * j] = se[j];
                    dst[2 * j + 1] = so[j];
                }
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int nn = 0; nn < n; nn++) {
            float *xi = dx + ((int64_t)c * n + nn) * h * w;
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++) {
                    const float v = dxph[((r % s) * s + q % s) * pst + ((int64_t)c * n + nn) * plane + (r / s) * wp + q / s];
                    xi[r * w + q] = acc ? xi[r * w + q] + v : v;
                }
        }
}

#ifdef XB_CONV_AVX512
/* The 8 x 48 register tile of ukr_p: accumulators p (vector 0), q (1), s (2) for rows 0-7
 * (named, not an array: GCC spills arrays of vectors in these loops), and one k step on it from a
 * (8 packed row values) and b0, b1, b2 (the step's three B vectors). */
#define TILE_DECL                                                                                    \
    __m512 p0 = _mm512_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0, p6 = p0, p7 = p0; \
    __m512 q0 = p0, q1 = p0, q2 = p0, q3 = p0, q4 = p0, q5 = p0, q6 = p0, q7 = p0;                 \
    __m512 s0 = p0, s1 = p0, s2 = p0, s3 = p0, s4 = p0, s5 = p0, s6 = p0, s7 = p0;
#define TILE_ROW(r, P, Q, S)                                                                         \
    av = _mm512_set1_ps(a[r]);                                                                       \
    P = _mm512_fmadd_ps(av, b0, P);                                                                  \
    Q = _mm512_fmadd_ps(av, b1, Q);                                                                  \
    S = _mm512_fmadd_ps(av, b2, S);
#define TILE_STEP()                                                                                  \
    do {                                                                                             \
        __m512 av;                                                                                   \
        TILE_ROW(0, p0, q0, s0) TILE_ROW(1, p1, q1, s1) TILE_ROW(2, p2, q2, s2)                      \
        TILE_ROW(3, p3, q3, s3) TILE_ROW(4, p4, q4, s4) TILE_ROW(5, p5, q5, s5)                      \
        TILE_ROW(6, p6, q6, s6) TILE_ROW(7, p7, q7, s7)                                              \
    } while (0)

/* The 8 x 48 tile product on a packed B sliver: c (rows < mr, ldc; lanes under m0, m1, m2 of its
 * three vectors) = [relu]([cl +] a (kc x 8, packed) . b (kc x 48, contiguous) [+ bias]), the running
 * sum cl (ldl) read where load is set (it may be c itself). */
static inline __attribute__((always_inline)) void ukr_p(int kc, const float *a, const float *b, const float *cl,
                                                        int64_t ldl, float *c, int64_t ldc, const float *bias,
                                                        int load, int relu,
                                                        int mr, __mmask16 m0, __mmask16 m1, __mmask16 m2,
                                                        int full) {
    TILE_DECL
    for (int k = 0; k < kc; k++, a += PK_MR, b += 48) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32);
        TILE_STEP();
    }
#define P_ONE(cr, lr, V, m)                                                                          \
    if (full || m) {                                                                                 \
        if (load) V = _mm512_add_ps(full ? _mm512_loadu_ps(lr) : _mm512_maskz_loadu_ps(m, lr), V);   \
        if (relu) V = relu_ps(V);                                                                    \
        if (full) _mm512_storeu_ps(cr, V);                                                           \
        else _mm512_mask_storeu_ps(cr, m, V);                                                        \
    }
#define P_STORE(r, P, Q, S)                                                                          \
    if (full || r < mr) {                                                                            \
        float *cr = c + (int64_t)(r) * ldc;                                                          \
        const float *lr = cl + (int64_t)(r) * ldl;                                                   \
        if (bias) {                                                                                  \
            const __m512 bv = _mm512_set1_ps(bias[r]);                                               \
            P = _mm512_add_ps(P, bv);                                                                \
            Q = _mm512_add_ps(Q, bv);                                                                \
            S = _mm512_add_ps(S, bv);                                                                \
        }                                                                                            \
        P_ONE(cr, lr, P, m0) P_ONE(cr + 16, lr + 16, Q, m1) P_ONE(cr + 32, lr + 32, S, m2)           \
    }
    P_STORE(0, p0, q0, s0) P_STORE(1, p1, q1, s1) P_STORE(2, p2, q2, s2) P_STORE(3, p3, q3, s3)
    P_STORE(4, p4, q4, s4) P_STORE(5, p5, q5, s5) P_STORE(6, p6, q6, s6) P_STORE(7, p7, q7, s7)
#undef P_STORE
#undef P_ONE
}

static void ukr_p_full(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu) {
    ukr_p(kc, a, b, cl, ldl, c, ldc, bias, load, relu, PK_MR, 0xffff, 0xffff, 0xffff, 1);
}

/* nc: columns of c to write (<= 48) */
static void ukr_p_edge(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu, int mr, int nc) {
    ukr_p(kc, a, b, cl, ldl, c, ldc, bias, load, relu, mr, range_mask(0, nc), range_mask(0, nc - 16),
          range_mask(0, nc - 32), 0);
}

#elif defined(XB_CONV_AVX2)
/* ukr_p on AVX2: the 8 x 48 tile as four 4 x 24 sub-tiles (12 ymm accumulators, 3 B vectors and a
 * broadcast: all 16 registers), each a full pass over the L1 sliver. */
#define U4_ROW(r, P, Q, S)                                                                           \
    av = _mm256_broadcast_ss(a + (r));                                                               \
    P = _mm256_fmadd_ps(av, b0, P);                                                                  \
    Q = _mm256_fmadd_ps(av, b1, Q);                                                                  \
    S = _mm256_fmadd_ps(av, b2, S);
#define U4_STORE(r, P, Q, S)                                                                         \
    {                                                                                                \
        float *cr = c + (int64_t)(r) * ldc;                                                          \
        if (bias) {                                                                                  \
            const __m256 bv = _mm256_set1_ps(bias[r]);                                               \
            P = _mm256_add_ps(P, bv);                                                                \
            Q = _mm256_add_ps(Q, bv);                                                                \
            S = _mm256_add_ps(S, bv);                                                                \
        }                                                                                            \
        if (load) {                                                                                  \
            const float *lr = cl + (int64_t)(r) * ldl;                                               \
            P = _mm256_add_ps(_mm256_loadu_ps(lr), P);                                               \
            Q = _mm256_add_ps(_mm256_loadu_ps(lr + 8), Q);                                           \
            S = _mm256_add_ps(_mm256_loadu_ps(lr + 16), S);                                          \
        }                                                                                            \
        if (relu) {                                                                                  \
            P = relu8(P);                                                                            \
            Q = relu8(Q);                                                                            \
            S = relu8(S);                                                                            \
        }                                                                                            \
        _mm256_storeu_ps(cr, P);                                                                     \
        _mm256_storeu_ps(cr + 8, Q);                                                                 \
        _mm256_storeu_ps(cr + 16, S);                                                                \
    }

/* c (4 x 24, ldc) = [relu]([cl +] a (kc x 4 of the 8 packed rows) . b (kc x 24 of the sliver's 48)
 * [+ bias]); the sums in the same order as ukr_p on AVX-512: products, + bias, then cl +. */
static inline __attribute__((always_inline)) void ukr4x24(int kc, const float *a, const float *b, const float *cl,
                                                          int64_t ldl, float *c, int64_t ldc, const float *bias,
                                                          int load, int relu) {
    __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
    __m256 s0 = p0, s1 = p0, s2 = p0, s3 = p0;
    for (int k = 0; k < kc; k++, a += PK_MR, b += 48) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), b2 = _mm256_load_ps(b + 16);
        /* keep B in registers: GCC otherwise folds its loads into all 12 FMAs (16 loads per 12 FMAs,
         * more than the two 256-bit loads per cycle that feed two FMAs per cycle) */
        __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2));
        __m256 av;
        U4_ROW(0, p0, q0, s0) U4_ROW(1, p1, q1, s1) U4_ROW(2, p2, q2, s2) U4_ROW(3, p3, q3, s3)
    }
    U4_STORE(0, p0, q0, s0) U4_STORE(1, p1, q1, s1) U4_STORE(2, p2, q2, s2) U4_STORE(3, p3, q3, s3)
}
#undef U4_ROW
#undef U4_STORE

static void ukr_p_full(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu) {
    for (int rh = 0; rh < PK_MR; rh += 4)
        for (int ch = 0; ch < 48; ch += 24)
            ukr4x24(kc, a + rh, b + ch, load ? cl + (int64_t)rh * ldl + ch : NULL, ldl, c + (int64_t)rh * ldc + ch,
                    ldc, bias ? bias + rh : NULL, load, relu);
}

/* rows < mr and columns < nc of the tile: the full tile into a buffer, then the same sums per element */
static void ukr_p_edge(int kc, const float *a, const float *b, const float *cl, int64_t ldl, float *c, int64_t ldc,
                       const float *bias, int load, int relu, int mr, int nc) {
    float t[PK_MR * 48] __attribute__((aligned(32)));
    ukr_p_full(kc, a, b, NULL, 0, t, 48, NULL, 0, 0);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nc; j++) {
            float v = t[r * 48 + j];
            if (bias) v = v + bias[r];
            if (load) v = cl[(int64_t)r * ldl + j] + v;
            if (relu) v = v < 0.0f ? 0.0f : v;
            c[(int64_t)r * ldc + j] = v;
        }
}
#endif /* ukr_p */

/* y (M, n*out_img) = [relu]([y +] implicit conv of x (C, n, in) with packed A (M x C*T, k = c*T + t)
 * [+ bias (M)]).  Parallel over tiles of 3 output vectors (48 positions).
 * B is not read in place by the GEMM: the rows of a tile lie one channel plane (n*h*w floats, at
 * batch 128 a multiple of 4 KiB) apart, so they all fall in the same L1 sets, and, when the kernel
 * gave the buffer physically contiguous pages, the same L2 sets: read in place once per block of 8
 * output channels, they were refetched from L3, and how often depended on the process's page
 * placement (resnet20's 32x16x16 layers took 6 to 14 ms from one run to the next).  Instead each
 * block of XB_CONV_KBLOCK k-rows of the tile's B is copied once into a contiguous 12 KiB sliver that
 * stays in L1 while every block of A passes over it, in channel-major k order so that the 9 taps of
 * a channel, which share their cache lines, are read one after the other.
 * Accuracy: one fp32 register summing all K products (K = 4608 in vgg8) has an rms rounding error
 * of about u sqrt(K/6), u = 2^-24: 3-5x that of cblas_sgemm or torch, enough to flip ReLU masks
 * downstream.  So each ukr_p call sums at most XB_CONV_KBLOCK products in registers and adds them
 * to a running sum (the first block starts it [+ bias] [+ y with acc], the last stores it to y).
 * The running sums live in a contiguous per-thread buffer rs (M x 48), not in y: y's rows are a
 * plane apart too, so its 8 x 48 tiles alias in L1 and L2 like B's rows. */
static void conv_s1_fwd(const tap_geom *gm, int n, int C, int M, const float *x, const float *Ap,
                        float *y, int64_t ldy, const float *bias, int acc, int relu) {
    const int64_t nv = (int64_t)n * gm->vpi, ntile = (nv + 2) / 3;
    const int nmb = (M + PK_MR - 1) / PK_MR, T = gm->T, K = C * T;
    const int64_t astride = (int64_t)K * PK_MR;
    const int multi = K > XB_CONV_KBLOCK; /* running sums between k blocks, in rs */
#pragma omp parallel
    {
        float bp[XB_CONV_KBLOCK * 48] __attribute__((aligned(64)));
        float *rs = multi ? xb_malloc(sizeof(float) * (size_t)nmb * PK_MR * 48) : NULL;
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < ntile; tile++) {
            const int64_t v0 = 3 * tile;
            const float *xb[3];
            const uint16_t *mk[3];
            const int cnt = tile_begin(gm, x, nv, v0, C, y, ldy, M, xb, mk);
            for (int k0 = 0, t = 0, ci = 0; k0 < K; k0 += XB_CONV_KBLOCK) {
                const int kc = K - k0 < XB_CONV_KBLOCK ? K - k0 : XB_CONV_KBLOCK;
                for (int kk = 0; kk < kc; kk++) { /* k = ci*T + t: a channel's taps share their lines */
                    const int64_t off = gm->toff[t] + (int64_t)ci * gm->cst;
                    for (int j = 0; j < 3; j++) sliver16(bp + kk * 48 + 16 * j, j < cnt ? mk[j][t] : 0, xb[j] + off);
                    if (++t == T) {
                        t = 0;
                        ci++;
                    }
                }
                const int last = k0 + kc == K;
                for (int ib = 0; ib < nmb; ib++) {
                    const int mr = M - ib * PK_MR < PK_MR ? M - ib * PK_MR : PK_MR;
                    float *c = y + (int64_t)ib * PK_MR * ldy + v0 * 16, *r = multi ? rs + (int64_t)ib * PK_MR * 48 : c;
                    const float *a = Ap + ib * astride + (int64_t)k0 * PK_MR;
                    const float *bb = bias && k0 == 0 ? bias + ib * PK_MR : NULL;
                    const float *cl = k0 == 0 ? c : r; /* running sum: y (with acc), then rs */
                    const int64_t ldl = k0 == 0 ? ldy : 48;
                    float *cs = last ? c : r;
                    const int64_t lds = last ? ldy : 48;
                    const int load = acc || k0 > 0, rl = relu && last;
                    if (mr == PK_MR && cnt == 3) ukr_p_full(kc, a, bp, cl, ldl, cs, lds, bb, load, rl);
                    else ukr_p_edge(kc, a, bp, cl, ldl, cs, lds, bb, load, rl, mr, 16 * cnt);
                }
            }
        }
        xb_free(rs);
    }
}

#ifdef XB_CONV_AVX512
#define S1DW_MR 4
#define S1DW_NR 6
#define DW3_CPT 2 /* input channels per dw_tile3 tile */

/* One dW tile (4 output channels x 6 consecutive k = (c, t)) over the output vectors [v0, v1):
 * dot products over positions, reduced at the end. */
static void dw_tile(const tap_geom *gm, int C, int M, const float *x, const float *dy, int64_t ldy,
                    int64_t v0, int64_t v1, int tile, float *dw, int64_t ldw) {
    const int T = gm->T, K = C * T, nkb = (K + S1DW_NR - 1) / S1DW_NR;
    int ib = tile / nkb, kb = tile % nkb;
    const float *ar[S1DW_MR];
    int64_t xoff[S1DW_NR];
    int tap[S1DW_NR];
    rows_clamped(ar, S1DW_MR, dy, ldy, ib * S1DW_MR, M);
    dw_taps(gm, K, kb * S1DW_NR, S1DW_NR, tap, xoff);
    const uint16_t t0 = (uint16_t)tap[0], t1 = (uint16_t)tap[1], t2 = (uint16_t)tap[2];
    const uint16_t t3 = (uint16_t)tap[3], t4 = (uint16_t)tap[4], t5 = (uint16_t)tap[5];
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3];
    /* named accumulators (a[r] x b[s]): GCC spills arrays of vectors in this loop shape */
    __m512 z = _mm512_setzero_ps();
    __m512 e00 = z, e01 = z, e02 = z, e03 = z, e04 = z, e05 = z, e10 = z, e11 = z, e12 = z, e13 = z,
           e14 = z, e15 = z, e20 = z, e21 = z, e22 = z, e23 = z, e24 = z, e25 = z, e30 = z, e31 = z,
           e32 = z, e33 = z, e34 = z, e35 = z;
    int64_t v = v0;
    while (v < v1) {
        int64_t nn = v / gm->vpi;
        int vi = (int)(v % gm->vpi);
        int64_t vend = (nn + 1) * gm->vpi < v1 ? (nn + 1) * gm->vpi : v1;
        const float *xb = x + nn * gm->in_img + (int64_t)vi * 16;
        const uint16_t *mk = gm->mtab + (int64_t)vi * T;
        for (; v < vend; v++, xb += 16, mk += T) {
            __m512 b0 = _mm512_maskz_loadu_ps(mk[t0], xb + xoff[0]);
            __m512 b1 = _mm512_maskz_loadu_ps(mk[t1], xb + xoff[1]);
            __m512 b2 = _mm512_maskz_loadu_ps(mk[t2], xb + xoff[2]);
            __m512 b3 = _mm512_maskz_loadu_ps(mk[t3], xb + xoff[3]);
            __m512 b4 = _mm512_maskz_loadu_ps(mk[t4], xb + xoff[4]);
            __m512 b5 = _mm512_maskz_loadu_ps(mk[t5], xb + xoff[5]);
            __m512 av;
#define DW_ROW(A, E0, E1, E2, E3, E4, E5)                                                             \
av = _mm512_loadu_ps(A + v * 16);                                                                \
E0 = _mm512_fmadd_ps(av, b0, E0);                                                                \
E1 = _mm512_fmadd_ps(av, b1, E1);                                                                \
E2 = _mm512_fmadd_ps(av, b2, E2);                                                                \
E3 = _mm512_fmadd_ps(av, b3, E3);                                                                \
E4 = _mm512_fmadd_ps(av, b4, E4);                                                                \
E5 = _mm512_fmadd_ps(av, b5, E5);
            DW_ROW(a0, e00, e01, e02, e03, e04, e05)
            DW_ROW(a1, e10, e11, e12, e13, e14, e15)
            DW_ROW(a2, e20, e21, e22, e23, e24, e25)
            DW_ROW(a3, e30, e31, e32, e33, e34, e35)
#undef DW_ROW
        }
    }
    __m512 acc[S1DW_MR][S1DW_NR] = {{e00, e01, e02, e03, e04, e05}, {e10, e11, e12, e13, e14, e15},
                                     {e20, e21, e22, e23, e24, e25}, {e30, e31, e32, e33, e34, e35}};
    for (int r = 0; r < S1DW_MR; r++) {
        int i = ib * S1DW_MR + r;
        if (i >= M) break;
        for (int s = 0; s < S1DW_NR; s++) {
            int k = kb * S1DW_NR + s;
            if (k < K) dw[(int64_t)i * ldw + k] += _mm512_reduce_add_ps(acc[r][s]);
        }
    }
}

/* The same for kw == 3 with k grouped as 2 input channels x the 3 taps of one kernel row: the
 * two channels share the row's 3 masks and offsets, which keeps the loop's registers in check. */
static void dw_tile3(const tap_geom *gm, int C, int M, const float *x, const float *dy, int64_t ldy,
                     int64_t v0, int64_t v1, int tile, float *dw, int64_t ldw) {
    const int T = gm->T, kh = T / 3, ncp = (C + 1) / 2;
    const int ib = tile / (kh * ncp), ki = tile / ncp % kh, cp = tile % ncp;
    const int c0 = 2 * cp, c1 = c0 + 1 < C ? c0 + 1 : c0, tb = ki * 3;
    const float *a0, *a1, *a2, *a3;
    {
        const float *ar[S1DW_MR];
        for (int r = 0; r < S1DW_MR; r++) {
            int i = ib * S1DW_MR + r;
            ar[r] = dy + (int64_t)(i < M ? i : M - 1) * ldy;
        }
        a0 = ar[0]; a1 = ar[1]; a2 = ar[2]; a3 = ar[3];
    }
    const int64_t o0 = gm->toff[tb], o1 = gm->toff[tb + 1], o2 = gm->toff[tb + 2];
    const int64_t cst0 = (int64_t)c0 * gm->cst, cst1 = (int64_t)c1 * gm->cst;
    __m512 z = _mm512_setzero_ps();
    __m512 e00 = z, e01 = z, e02 = z, e03 = z, e04 = z, e05 = z, e10 = z, e11 = z, e12 = z, e13 = z,
           e14 = z, e15 = z, e20 = z, e21 = z, e22 = z, e23 = z, e24 = z, e25 = z, e30 = z, e31 = z,
           e32 = z, e33 = z, e34 = z, e35 = z;
    int64_t v = v0;
    while (v < v1) {
        int64_t nn = v / gm->vpi;
        int vi = (int)(v % gm->vpi);
        int64_t vend = (nn + 1) * gm->vpi < v1 ? (nn + 1) * gm->vpi : v1;
        const float *xp = x + nn * gm->in_img + (int64_t)vi * 16 + cst0;
        const float *xq = x + nn * gm->in_img + (int64_t)vi * 16 + cst1;
        const uint16_t *mk = gm->mtab + (int64_t)vi * T + tb;
        for (; v < vend; v++, xp += 16, xq += 16, mk += T) {
            const __mmask16 m0 = mk[0], m1 = mk[1], m2 = mk[2];
            __m512 b0 = _mm512_maskz_loadu_ps(m0, xp + o0);
            __m512 b1 = _mm512_maskz_loadu_ps(m1, xp + o1);
            __m512 b2 = _mm512_maskz_loadu_ps(m2, xp + o2);
            __m512 b3 = _mm512_maskz_loadu_ps(m0, xq + o0);
            __m512 b4 = _mm512_maskz_loadu_ps(m1, xq + o1);
            __m512 b5 = _mm512_maskz_loadu_ps(m2, xq + o2);
            __m512 av;
#define DW_ROW(A, E0, E1, E2, E3, E4, E5)                                                             \
    av = _mm512_loadu_ps(A + v * 16);                                                                \
    E0 = _mm512_fmadd_ps(av, b0, E0);                                                                \
    E1 = _mm512_fmadd_ps(av, b1, E1);                                                                \
    E2 = _mm512_fmadd_ps(av, b2, E2);                                                                \
    E3 = _mm512_fmadd_ps(av, b3, E3);                                                                \
    E4 = _mm512_fmadd_ps(av, b4, E4);                                                                \
    E5 = _mm512_fmadd_ps(av, b5, E5);
            DW_ROW(a0, e00, e01, e02, e03, e04, e05)
            DW_ROW(a1, e10, e11, e12, e13, e14, e15)
            DW_ROW(a2, e20, e21, e22, e23, e24, e25)
            DW_ROW(a3, e30, e31, e32, e33, e34, e35)
#undef DW_ROW
        }
    }
    __m512 acc[S1DW_MR][6] = {{e00, e01, e02, e03, e04, e05}, {e10, e11, e12, e13, e14, e15},
                              {e20, e21, e22, e23, e24, e25}, {e30, e31, e32, e33, e34, e35}};
    for (int r = 0; r < S1DW_MR; r++) {
        int i = ib * S1DW_MR + r;
        if (i >= M) break;
        float *dwr = dw + (int64_t)i * ldw;
        for (int j = 0; j < 3; j++) {
            dwr[(int64_t)c0 * T + tb + j] += _mm512_reduce_add_ps(acc[r][j]);
            if (c1 != c0) dwr[(int64_t)c1 * T + tb + j] += _mm512_reduce_add_ps(acc[r][3 + j]);
        }
    }
}

/* 16 x 16 transpose: rows r[0..15] (16 floats each) -> out + i*ldo (i = 0..15) holds column i. */
static inline void transpose16(__m512 r[16], float *out, int64_t ldo) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4q + j] holds, in 128-bit lane L, column 4L + j of rows 4q..4q+3 */
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        t[j] = _mm512_shuffle_f32x4(a, c, 0x88);      /* column j      */
        t[8 + j] = _mm512_shuffle_f32x4(a, c, 0xdd);  /* column 8 + j  */
        t[4 + j] = _mm512_shuffle_f32x4(b, d, 0x88);  /* column 4 + j  */
        t[12 + j] = _mm512_shuffle_f32x4(b, d, 0xdd); /* column 12 + j */
    }
    for (int i = 0; i < 16; i++) _mm512_store_ps(out + i * ldo, t[i]);
}

/* out[i*ldo + q] = src[q][i] (i, q < 16): the 16 rows src[q] (masked by m[q]; NULL: zeros) transposed. */
static inline void pack_bt16(float *out, int64_t ldo, const float *const *src, const uint16_t *m) {
    __m512 rows[16];
    for (int q = 0; q < 16; q++) rows[q] = src[q] ? _mm512_maskz_loadu_ps(m[q], src[q]) : _mm512_setzero_ps();
    transpose16(rows, out, ldo);
}

#elif defined(XB_CONV_AVX2)
#define S1DW_MR 4
#define S1DW_NR 3
#define DW3_CPT 1 /* input channels per dw_tile3 tile */

/* One dW tile (4 output channels x 3 consecutive k = (c, t)) over the output vectors [v0, v1): dot
 * products over positions in 12 ymm accumulators, each vector of 16 positions as two halves.  dyc:
 * the tile's 4 rows of dY over [v0, v1), row r at dyc + r*ldc (conv_s1_dw copies them there). */
static void dw_tile(const tap_geom *gm, int C, int M, const float *x, const float *dyc, int64_t ldc,
                    int64_t v0, int64_t v1, int tile, float *dw, int64_t ldw) {
    const int T = gm->T, K = C * T, nkb = (K + S1DW_NR - 1) / S1DW_NR;
    const int ib = tile / nkb, kb = tile % nkb;
    const float *ar[S1DW_MR];
    int64_t xoff[S1DW_NR];
    int tap[S1DW_NR];
    for (int r = 0; r < S1DW_MR; r++) ar[r] = dyc + r * ldc;
    dw_taps(gm, K, kb * S1DW_NR, S1DW_NR, tap, xoff);
    __m256 e00 = _mm256_setzero_ps(), e01 = e00, e02 = e00, e10 = e00, e11 = e00, e12 = e00;
    __m256 e20 = e00, e21 = e00, e22 = e00, e30 = e00, e31 = e00, e32 = e00;
    int64_t v = v0;
    while (v < v1) {
        const int64_t nn = v / gm->vpi;
        const int vi = (int)(v % gm->vpi);
        const int64_t vend = (nn + 1) * gm->vpi < v1 ? (nn + 1) * gm->vpi : v1;
        const float *xb = x + nn * gm->in_img + (int64_t)vi * 16;
        const uint16_t *mk = gm->mtab + (int64_t)vi * T;
        for (; v < vend; v++, xb += 16, mk += T)
            for (int h = 0; h < 16; h += 8) {
                const __m256 b0 = maskz_load8((unsigned)mk[tap[0]] >> h, xb + xoff[0] + h);
                const __m256 b1 = maskz_load8((unsigned)mk[tap[1]] >> h, xb + xoff[1] + h);
                const __m256 b2 = maskz_load8((unsigned)mk[tap[2]] >> h, xb + xoff[2] + h);
                __m256 av;
#define DW2_ROW(A, E0, E1, E2)                                                                        \
    av = _mm256_loadu_ps(A + (v - v0) * 16 + h);                                                     \
    E0 = _mm256_fmadd_ps(av, b0, E0);                                                                \
    E1 = _mm256_fmadd_ps(av, b1, E1);                                                                \
    E2 = _mm256_fmadd_ps(av, b2, E2);
                DW2_ROW(ar[0], e00, e01, e02) DW2_ROW(ar[1], e10, e11, e12)
                DW2_ROW(ar[2], e20, e21, e22) DW2_ROW(ar[3], e30, e31, e32)
            }
    }
    const __m256 acc[S1DW_MR][S1DW_NR] = {{e00, e01, e02}, {e10, e11, e12}, {e20, e21, e22}, {e30, e31, e32}};
    for (int r = 0; r < S1DW_MR; r++) {
        const int i = ib * S1DW_MR + r;
        if (i >= M) break;
        for (int s = 0; s < S1DW_NR; s++) {
            const int k = kb * S1DW_NR + s;
            if (k < K) dw[(int64_t)i * ldw + k] += hsum8(acc[r][s]);
        }
    }
}

/* The same for kw == 3 with k = the 3 taps of one kernel row of one input channel (they share their
 * cache lines). */
static void dw_tile3(const tap_geom *gm, int C, int M, const float *x, const float *dyc, int64_t ldc,
                     int64_t v0, int64_t v1, int tile, float *dw, int64_t ldw) {
    const int T = gm->T, kh = T / 3;
    const int ib = tile / (kh * C), ki = tile / C % kh, c0 = tile % C, tb = ki * 3;
    const float *ar[S1DW_MR];
    for (int r = 0; r < S1DW_MR; r++) ar[r] = dyc + r * ldc;
    const int64_t o0 = gm->toff[tb], o1 = gm->toff[tb + 1], o2 = gm->toff[tb + 2];
    __m256 e00 = _mm256_setzero_ps(), e01 = e00, e02 = e00, e10 = e00, e11 = e00, e12 = e00;
    __m256 e20 = e00, e21 = e00, e22 = e00, e30 = e00, e31 = e00, e32 = e00;
    int64_t v = v0;
    while (v < v1) {
        const int64_t nn = v / gm->vpi;
        const int vi = (int)(v % gm->vpi);
        const int64_t vend = (nn + 1) * gm->vpi < v1 ? (nn + 1) * gm->vpi : v1;
        const float *xp = x + nn * gm->in_img + (int64_t)vi * 16 + (int64_t)c0 * gm->cst;
        const uint16_t *mk = gm->mtab + (int64_t)vi * T + tb;
        for (; v < vend; v++, xp += 16, mk += T)
            for (int h = 0; h < 16; h += 8) {
                const __m256 b0 = maskz_load8((unsigned)mk[0] >> h, xp + o0 + h);
                const __m256 b1 = maskz_load8((unsigned)mk[1] >> h, xp + o1 + h);
                const __m256 b2 = maskz_load8((unsigned)mk[2] >> h, xp + o2 + h);
                __m256 av;
                DW2_ROW(ar[0], e00, e01, e02) DW2_ROW(ar[1], e10, e11, e12)
                DW2_ROW(ar[2], e20, e21, e22) DW2_ROW(ar[3], e30, e31, e32)
#undef DW2_ROW
            }
    }
    const __m256 acc[S1DW_MR][3] = {{e00, e01, e02}, {e10, e11, e12}, {e20, e21, e22}, {e30, e31, e32}};
    for (int r = 0; r < S1DW_MR; r++) {
        const int i = ib * S1DW_MR + r;
        if (i >= M) break;
        for (int j = 0; j < 3; j++) dw[(int64_t)i * ldw + (int64_t)c0 * T + tb + j] += hsum8(acc[r][j]);
    }
}

/* out[i*ldo + q] = src[q][i] (i, q < 16): the 16 rows src[q] (masked by m[q]; NULL: zeros) transposed,
 * as four 8 x 8 transposes. */
static inline void pack_bt16(float *out, int64_t ldo, const float *const *src, const uint16_t *m) {
    for (int rh = 0; rh < 16; rh += 8)
        for (int ch = 0; ch < 16; ch += 8) {
            __m256 r[8], t[8];
            for (int q = 0; q < 8; q++)
                r[q] = src[rh + q] ? maskz_load8((unsigned)m[rh + q] >> ch, src[rh + q] + ch) : _mm256_setzero_ps();
            for (int q = 0; q < 8; q += 2) {
                t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
                t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
            }
            for (int q = 0; q < 8; q += 4) {
                r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
                r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
                r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
                r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
            }
            /* r[j] (j < 4) holds, in 128-bit lane L, column 4L + j of rows 0..3; r[4 + j] of rows 4..7 */
            for (int j = 0; j < 4; j++) {
                _mm256_storeu_ps(out + (int64_t)(ch + j) * ldo + rh, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
                _mm256_storeu_ps(out + (int64_t)(ch + 4 + j) * ldo + rh, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
            }
        }
}
#endif /* dw tiles */

/* C (M x K, ldc) += A (M x P, lda) . B (K x P)^T for many rows (M >= XB_CONV_PACK_MIN_M): the dW
 * of a conv, dY col^T, as a GEMM over positions on ukr_p.  Row k of B (= col) is read from x through
 * the implicit geometry gm (k = c*T + t, P = 16 * vectors) or, with gm NULL, from B (ldb).
 * Blocks of XB_CONV_DW_PBLOCK positions; per block A^T is packed by 8 rows ([p][8]) and B^T 48
 * columns wide ([p][48], by 16 x 16 transposes).  Each ukr_p call adds at most XB_CONV_KBLOCK
 * products to C in memory.  (conv_s1_dw and gemm_nt instead hold every partial sum in registers
 * over a whole chunk of positions and so reread the K x chunk inputs from L3 for every few rows
 * of dY.)  Threads own (k block, row block) tiles, k-block-major, and every C element sums its
 * blocks in position order: results do not depend on the thread count. */
static void gemm_nt_packed(int M, int K, int64_t P, const float *dy, int64_t ldy, const tap_geom *gm,
                           const float *x, int64_t ldb, float *dw, int64_t ldw) {
    enum { PB = XB_CONV_DW_PBLOCK };
    const int T = gm ? gm->T : 1, nmb = (M + PK_MR - 1) / PK_MR, nkb = (K + 47) / 48;
    const int ntile = nmb * nkb;
#pragma omp parallel
    {
        int lo, hi;
        thread_range(ntile, &lo, &hi);
        float *at = NULL, *bt = NULL;
        if (hi > lo) {
            at = xb_malloc(sizeof(float) * ((size_t)nmb * PK_MR * PB + 48 * PB));
            bt = at + (size_t)nmb * PK_MR * PB;
        }
        const int ib0 = hi > lo ? lo % nmb : 0, ib1 = hi - lo >= nmb ? nmb : (hi - 1) % nmb + 1;
        const int iball = hi - lo >= nmb || ib1 <= ib0; /* the range wraps: pack every row block */
        for (int64_t p0 = 0; p0 < P && hi > lo; p0 += PB) {
            const int np = P - p0 < PB ? (int)(P - p0) : PB, nvb = (np + 15) / 16;
            /* A: at[ib][p][r] = dy[ib*8 + r][p0 + p] */
            for (int ib = iball ? 0 : ib0; ib < (iball ? nmb : ib1); ib++)
                for (int r = 0; r < PK_MR; r++) {
                    const int i = ib * PK_MR + r;
                    float *dst = at + (int64_t)ib * PK_MR * PB + r;
                    if (i >= M) {
                        for (int p = 0; p < np; p++) dst[p * PK_MR] = 0.0f;
                        continue;
                    }
                    const float *src = dy + (int64_t)i * ldy + p0;
                    for (int p = 0; p < np; p++) dst[p * PK_MR] = src[p];
                }
            int kb_packed = -1;
            for (int tile = lo; tile < hi; tile++) {
                const int kb = tile / nmb, ib = tile % nmb, k0 = kb * 48, nk = K - k0 < 48 ? K - k0 : 48;
                if (kb != kb_packed) { /* B: bt[p][kk] = x shifted for k = k0 + kk at position p */
                    for (int g = 0; g < 3; g++)
                        for (int j = 0; j < nvb; j++) {
                            const float *src[16];
                            uint16_t msk[16];
                            if (gm) {
                                const int64_t v = p0 / 16 + j, nn = v / gm->vpi;
                                const int vi = (int)(v % gm->vpi);
                                const float *xv = x + nn * gm->in_img + (int64_t)vi * 16;
                                const uint16_t *mk = gm->mtab + (int64_t)vi * T;
                                for (int q = 0; q < 16; q++) {
                                    const int k = k0 + 16 * g + q;
                                    src[q] = k < K ? xv + (int64_t)(k / T) * gm->cst + gm->toff[k % T] : NULL;
                                    msk[q] = k < K ? mk[k % T] : 0;
                                }
                            } else {
                                const uint16_t m = range_mask(0, np - 16 * j);
                                for (int q = 0; q < 16; q++) {
                                    const int k = k0 + 16 * g + q;
                                    src[q] = k < K ? x + (int64_t)k * ldb + p0 + 16 * j : NULL;
                                    msk[q] = m;
                                }
                            }
                            pack_bt16(bt + (int64_t)16 * j * 48 + 16 * g, 48, src, msk);
                        }
                    kb_packed = kb;
                }
                const int mr = M - ib * PK_MR < PK_MR ? M - ib * PK_MR : PK_MR;
                float *c = dw + (int64_t)ib * PK_MR * ldw + k0;
                const float *a = at + (int64_t)ib * PK_MR * PB;
                for (int pb = 0; pb < np; pb += XB_CONV_KBLOCK) {
                    const int kc = np - pb < XB_CONV_KBLOCK ? np - pb : XB_CONV_KBLOCK;
                    if (mr == PK_MR && nk == 48) ukr_p_full(kc, a + pb * PK_MR, bt + pb * 48, c, ldw, c, ldw, NULL, 1, 0);
                    else ukr_p_edge(kc, a + pb * PK_MR, bt + pb * 48, c, ldw, c, ldw, NULL, 1, 0, mr, nk);
                }
            }
        }
        xb_free(at);
    }
}

/* gemm_nt, packed when there are enough rows and columns to pay for the packing. */
static void gemm_nt_any(int M, int N, int64_t P, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float *C, int64_t ldc) {
    if (M >= XB_CONV_PACK_MIN_M && N >= XB_CONV_DW_PACK_MIN_K) gemm_nt_packed(M, N, P, A, lda, NULL, B, ldb, C, ldc);
    else gemm_nt(M, N, P, A, lda, B, ldb, C, ldc);
}

/* dW (M x C*T, ldw) += dY (M, n*out_img) . X^T over all nv output vectors.  Positions go in chunks
 * (so a tile's 4 rows of dY stay in L1), each tile reduced once per chunk.  One parallel region:
 * each thread owns a fixed range of tiles and walks all chunks, so there is no barrier per chunk,
 * and every dW element is summed in the same order for any thread count. */
static void conv_s1_dw(const tap_geom *gm, int C, int M, const float *x, const float *dy, int64_t ldy,
                       int64_t nv, float *dw, int64_t ldw) {
    const int K = C * gm->T, nmb = (M + S1DW_MR - 1) / S1DW_MR, row3 = gm->kw == 3 && gm->T % 3 == 0;
    const int ntile = row3 ? nmb * (gm->T / 3) * ((C + DW3_CPT - 1) / DW3_CPT) : nmb * ((K + S1DW_NR - 1) / S1DW_NR);
    if (M >= XB_CONV_PACK_MIN_M && K >= XB_CONV_DW_PACK_MIN_K) {
        gemm_nt_packed(M, K, 16 * nv, dy, ldy, gm, x, 0, dw, ldw);
        return;
    }
#pragma omp parallel
    {
        int lo, hi;
        thread_range(ntile, &lo, &hi);
#ifdef XB_CONV_AVX2
        /* The AVX2 tiles read their 4 rows of dY from a copy side by side: in place they lie a plane
         * apart and share cache sets, and the 16x16 dW at 32x32 then took 13 or 21 ms by process. */
        float *dyc = hi > lo ? xb_malloc(sizeof(float) * S1DW_MR * 16 * XB_CONV_DW_CHUNK_VECS) : NULL;
#endif
        for (int64_t v0 = 0; v0 < nv; v0 += XB_CONV_DW_CHUNK_VECS) {
            const int64_t v1 = v0 + XB_CONV_DW_CHUNK_VECS < nv ? v0 + XB_CONV_DW_CHUNK_VECS : nv;
#ifdef XB_CONV_AVX2
            const int64_t len = (v1 - v0) * 16, tiles_per_ib = ntile / nmb;
            int copied = -1;
            for (int tile = lo; tile < hi; tile++) {
                const int ib = (int)(tile / tiles_per_ib);
                if (ib != copied) { /* rows past M repeat the last row; their results are dropped */
                    for (int r = 0; r < S1DW_MR; r++) {
                        const int i = ib * S1DW_MR + r < M ? ib * S1DW_MR + r : M - 1;
                        memcpy(dyc + r * len, dy + (int64_t)i * ldy + v0 * 16, sizeof(float) * (size_t)len);
                    }
                    copied = ib;
                }
                if (row3) dw_tile3(gm, C, M, x, dyc, len, v0, v1, tile, dw, ldw);
                else dw_tile(gm, C, M, x, dyc, len, v0, v1, tile, dw, ldw);
            }
#else
            for (int tile = lo; tile < hi; tile++) {
                if (row3) dw_tile3(gm, C, M, x, dy, ldy, v0, v1, tile, dw, ldw);
                else dw_tile(gm, C, M, x, dy, ldy, v0, v1, tile, dw, ldw);
            }
#endif
        }
#ifdef XB_CONV_AVX2
        xb_free(dyc);
#endif
    }
}

/* A' of the adjoint (backward-data) conv: rows = input channels, k = (co, t) channel-major over the
 * selected taps: A'[ci][co*T + t] = W[co][ci][tapidx[t]], packed by 8 rows.  (The forward's A is W
 * itself, (M, C*T) with k = c*T + t, packed by pack_rows.) */
static void pack_adjoint(int cing, int coutg, int T, int Tk, const int32_t *tapidx, const float *w, float *Ap) {
    const int nb = (cing + PK_MR - 1) / PK_MR;
    for (int ib = 0; ib < nb; ib++)
        for (int co = 0; co < coutg; co++)
            for (int t = 0; t < T; t++)
                for (int r = 0; r < PK_MR; r++) {
                    int ci = ib * PK_MR + r;
                    Ap[((int64_t)ib * coutg * T + co * T + t) * PK_MR + r] =
                        ci < cing ? w[((int64_t)co * cing + ci) * Tk + tapidx[t]] : 0.0f;
                }
}
#endif /* XB_CONV_SIMD */

xb_status xb_conv2d_desc_init(xb_conv2d_desc *d, int cin, int cout, int kh, int kw, int sh, int sw,
                              int ph, int pw, int groups, int h, int w) {
    memset(d, 0, sizeof *d);
    if (cin <= 0 || cout <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || groups <= 0 || h <= 0 ||
        w <= 0 || ph < 0 || pw < 0)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: invalid descriptor (cin=%d cout=%d kernel=%dx%d stride=%dx%d "
                         "padding=%dx%d groups=%d input=%dx%d). HINT: channels, kernel, stride, groups "
                         "and input size must be positive and padding non-negative.",
                         cin, cout, kh, kw, sh, sw, ph, pw, groups, h, w);
    if (cin % groups || cout % groups)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: cin=%d and cout=%d must both be divisible by groups=%d. HINT: pick "
                         "groups among the common divisors of cin and cout.", cin, cout, groups);
    if (h + 2 * ph < kh || w + 2 * pw < kw)
        return xb_errorf(XB_ERR_SHAPE,
                         "conv2d: kernel %dx%d is larger than the padded input %dx%d (input %dx%d, "
                         "padding %dx%d), so the output would be empty. HINT: use a smaller kernel, "
                         "more padding, or a larger input (remove a downsampling layer before it).",
                         kh, kw, h + 2 * ph, w + 2 * pw, h, w, ph, pw);
    d->cin = cin; d->cout = cout; d->kh = kh; d->kw = kw; d->sh = sh; d->sw = sw;
    d->ph = ph; d->pw = pw; d->groups = groups; d->h = h; d->w = w;
    d->ho = (h + 2 * ph - kh) / sh + 1;
    d->wo = (w + 2 * pw - kw) / sw + 1;
    return XB_OK;
}

int xb_conv2d_k(const xb_conv2d_desc *d) { return d->cin / d->groups * d->kh * d->kw; }

/* 1x1, stride 1, no padding: x (cin, n, h, w) is already col. */
static int is_pointwise(const xb_conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

/* Output rows (n, oh) per column chunk: about XB_CONV_CHUNK_FLOATS, or for long K enough for one
 * gemm_pk group of panels (48 XB_CONV_PK_NG columns; the GEMM then reads each weight block once
 * per group), in whole panels of 48 columns where the rows are short enough. */
static int64_t chunk_rows(const xb_conv2d_desc *d, int n) {
    int64_t per_row = (int64_t)xb_conv2d_k(d) * d->wo, group = (int64_t)xb_conv2d_k(d) * 48 * XB_CONV_PK_NG;
    int64_t rows = (XB_CONV_CHUNK_FLOATS > group ? XB_CONV_CHUNK_FLOATS : group) / per_row;
    if (d->wo < 48 && rows * d->wo >= 48) rows = rows * d->wo / 48 * 48 / d->wo;
    int64_t total = (int64_t)n * d->ho;
    if (rows < 1) rows = 1;
    return rows < total ? rows : total;
}

/* The implicit path applies: equal strides s, output width == ceil(w/s) (e.g. kw = 2pw+1 with w
 * divisible by s), whole vectors of 16 positions per image in both directions, few enough taps.
 * 1x1 stride-1 convs go to the plain GEMM. */
static int use_implicit(const xb_conv2d_desc *d) {
#ifdef XB_CONV_SIMD
    const int s = d->sh, hp = (d->h + s - 1) / s, wp = (d->w + s - 1) / s;
    return d->sw == s && d->wo == wp && (d->ho * d->wo) % 16 == 0 && (hp * wp) % 16 == 0 &&
           d->kh * d->kw <= 64 && !is_pointwise(d);
#else
    (void)d;
    return 0;
#endif
}

/* Workspace layout (floats): [packed weights][tap tables][phase planes | col chunk]. */
static size_t pack_floats(const xb_conv2d_desc *d) {
#ifdef XB_CONV_SIMD
    size_t K = (size_t)xb_conv2d_k(d), coutg = (size_t)(d->cout / d->groups), cing = (size_t)(d->cin / d->groups);
    size_t T = (size_t)d->kh * d->kw;
    size_t a = (coutg + 7) / 8 * 8 * K, b = (K + 7) / 8 * 8 * coutg, c = (cing + 7) / 8 * 8 * coutg * T;
    size_t m = a > b ? a : b;
    m = m > c ? m : c;
    return (m + 15) / 16 * 16;
#else
    (void)d;
    return 0;
#endif
}

static size_t table_floats(const xb_conv2d_desc *d) {
    if (!use_implicit(d)) return 0;
    const int s = d->sh, hp = (d->h + s - 1) / s, wp = (d->w + s - 1) / s;
    size_t T = (size_t)d->kh * d->kw, vpi = (size_t)(d->ho * d->wo > hp * wp ? d->ho * d->wo : hp * wp) / 16;
    size_t bytes = T * (sizeof(int64_t) + sizeof(int32_t)) + vpi * T * sizeof(uint16_t);
    return (bytes / sizeof(float) + 15) / 16 * 16;
}

size_t xb_conv2d_workspace(const xb_conv2d_desc *d, int n) {
    size_t extra;
    if (use_implicit(d)) {
        const int s = d->sh, hp = (d->h + s - 1) / s, wp = (d->w + s - 1) / s;
        extra = s == 1 ? 0 : (size_t)s * s * (size_t)(d->cin / d->groups) * (size_t)n * hp * wp;
    } else {
        extra = is_pointwise(d) ? 0 : (size_t)xb_conv2d_k(d) * (size_t)(chunk_rows(d, n) * d->wo);
    }
    return pack_floats(d) + table_floats(d) + extra;
}

/* One output row of one col row: dst[ow] = xr[ow*sw + off] where 0 <= ow*sw + off < w, else 0
 * (ow < wo).  xr is the input row. */
static inline void gather_row(float *dst, const float *xr, int wo, int w, int sw, int off) {
#ifdef XB_CONV_AVX512
    if (sw == 1) {
        for (int ow = 0; ow < wo; ow += 16) {
            __m512 v = _mm512_maskz_loadu_ps(range_mask(-off - ow, w - off - ow), xr + off + ow);
            _mm512_mask_storeu_ps(dst + ow, range_mask(0, wo - ow), v);
        }
        return;
    }
    if (sw == 2) {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (int ow = 0; ow < wo; ow += 16) {
            int i0 = 2 * ow + off; /* input column of lane 0 of the first load */
            __m512 a = _mm512_maskz_loadu_ps(range_mask(-i0, w - i0), xr + i0);
            __m512 b = _mm512_maskz_loadu_ps(range_mask(-i0 - 16, w - i0 - 16), xr + i0 + 16);
            _mm512_mask_storeu_ps(dst + ow, range_mask(0, wo - ow), _mm512_permutex2var_ps(a, even, b));
        }
        return;
    }
#endif
    for (int ow = 0; ow < wo; ow++) {
        int iw = ow * sw + off;
        dst[ow] = (iw >= 0 && iw < w) ? xr[iw] : 0.0f;
    }
}

/* The adjoint of gather_row: xr[ow*sw + off] += src[ow] where the input column is inside [0, w). */
static inline void scatter_add_row(float *xr, const float *src, int wo, int w, int sw, int off) {
#ifdef XB_CONV_AVX512
    if (sw == 1) {
        for (int ow = 0; ow < wo; ow += 16) {
            __mmask16 m = range_mask(-off - ow, w - off - ow) & range_mask(0, wo - ow);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, xr + off + ow), _mm512_maskz_loadu_ps(m, src + ow));
            _mm512_mask_storeu_ps(xr + off + ow, m, v);
        }
        return;
    }
#endif
    for (int ow = 0; ow < wo; ow++) {
        int iw = ow * sw + off;
        if (iw >= 0 && iw < w) xr[iw] += src[ow];
    }
}

/* col (K, (q1-q0)*wo) for output rows q = nn*ho + oh in [q0, q1) of group g. */
#ifdef XB_CONV_AVX512
/* Tiny maps (vgg's 2x2 stage on CIFAR): stride 1, output size = input size, P = h*w positions per
 * image dividing 16, chunk [q0, q1) of whole images.  Then a column index is also x's position
 * index, a vector of 16 holds 16/P whole images, and every col row is a lane permutation of the
 * matching vector of x: one permute per 16 values instead of a call per row of w floats.  Per tap
 * (at most 64), idx/mask give for lane l the lane it takes from: im2col (adj = 0) the x lane that
 * feeds output position l, col2im (adj = 1) the col lane that adds into x position l. */
enum { TINY_MAX_T = 64 };
static int tiny_map(const xb_conv2d_desc *d, int64_t q0, int64_t q1) {
    const int P = d->h * d->w;
    return d->sh == 1 && d->sw == 1 && d->ho == d->h && d->wo == d->w && 16 % P == 0 && q0 % d->ho == 0 &&
           q1 % d->ho == 0 && d->kh * d->kw <= TINY_MAX_T;
}
static void tiny_taps(const xb_conv2d_desc *d, int adj, __m512i *idx, __mmask16 *mask) {
    const int P = d->h * d->w;
    for (int t = 0; t < d->kh * d->kw; t++) {
        const int ki = t / d->kw, kj = t % d->kw;
        int32_t ix[16];
        unsigned m = 0;
        for (int l = 0; l < 16; l++) {
            const int img = l / P, a = l % P / d->w, b = l % P % d->w; /* (a, b): row, column of lane l */
            const int sa = adj ? a + d->ph - ki : a - d->ph + ki, sb = adj ? b + d->pw - kj : b - d->pw + kj;
            ix[l] = 0;
            if (sa >= 0 && sa < d->h && sb >= 0 && sb < d->w) {
                ix[l] = img * P + sa * d->w + sb;
                m |= 1u << l;
            }
        }
        idx[t] = _mm512_loadu_si512(ix);
        mask[t] = (__mmask16)m;
    }
}

static void im2col_tiny(const xb_conv2d_desc *d, const float *xg, int n, int64_t q0, int64_t q1, float *col) {
    const int T = d->kh * d->kw, K = d->cin / d->groups * T;
    const int64_t cols = (q1 - q0) * d->wo, plane = (int64_t)n * d->h * d->w;
    __m512i idx[TINY_MAX_T];
    __mmask16 mask[TINY_MAX_T];
    tiny_taps(d, 0, idx, mask);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++) {
        const float *xc = xg + (int64_t)(r / T) * plane + q0 * d->wo;
        float *dst = col + (int64_t)r * cols;
        const __m512i ix = idx[r % T];
        const __mmask16 mt = mask[r % T];
        for (int64_t v = 0; v < cols; v += 16) {
            const __mmask16 m = range_mask(0, (int)(cols - v < 16 ? cols - v : 16));
            _mm512_mask_storeu_ps(dst + v, m, _mm512_maskz_permutexvar_ps(mt, ix, _mm512_maskz_loadu_ps(m, xc + v)));
        }
    }
}
/* dx += col2im(dcol), each dx value adding its taps in order (as col2im_rows does) */
static void col2im_tiny(const xb_conv2d_desc *d, float *dxg, int n, int64_t q0, int64_t q1, const float *dcol) {
    const int T = d->kh * d->kw, cing = d->cin / d->groups;
    const int64_t cols = (q1 - q0) * d->wo, plane = (int64_t)n * d->h * d->w;
    __m512i idx[TINY_MAX_T];
    __mmask16 mask[TINY_MAX_T];
    tiny_taps(d, 1, idx, mask);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < cing; c++) {
        float *dxc = dxg + (int64_t)c * plane + q0 * d->wo;
        const float *src = dcol + (int64_t)c * T * cols;
        for (int64_t v = 0; v < cols; v += 16) {
            const __mmask16 m = range_mask(0, (int)(cols - v < 16 ? cols - v : 16));
            __m512 acc = _mm512_maskz_loadu_ps(m, dxc + v);
            for (int t = 0; t < T; t++)
                acc = _mm512_mask_add_ps(acc, mask[t], acc,
                                         _mm512_permutexvar_ps(idx[t], _mm512_maskz_loadu_ps(m, src + t * cols + v)));
            _mm512_mask_storeu_ps(dxc + v, m, acc);
        }
    }
}
#endif

static void im2col_rows(const xb_conv2d_desc *d, int n, int g, const float *x, int64_t q0, int64_t q1,
                        float *col) {
    const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, ph = d->ph, pw = d->pw;
    const int h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int cing = d->cin / d->groups, K = cing * kh * kw;
    const int64_t cols = (q1 - q0) * wo, hw = (int64_t)h * w;
    const float *xg = x + (int64_t)g * cing * n * hw; /* (cing, n, h, w) */
#ifdef XB_CONV_AVX512
    if (tiny_map(d, q0, q1)) {
        im2col_tiny(d, xg, n, q0, q1, col);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++) {
        int c = r / (kh * kw), ki = r / kw % kh, kj = r % kw;
        const float *xc = xg + (int64_t)c * n * hw;
        float *dst = col + (int64_t)r * cols;
        int nn = (int)(q0 / ho), oh = (int)(q0 % ho);
        for (int64_t q = q0; q < q1; q++, dst += wo) {
            int ih = oh * sh - ph + ki;
            if (ih < 0 || ih >= h) memset(dst, 0, sizeof(float) * (size_t)wo);
            else gather_row(dst, xc + (int64_t)nn * hw + (int64_t)ih * w, wo, w, sw, kj - pw);
            if (++oh == ho) { oh = 0; nn++; }
        }
    }
}

/* dx += col2im(dcol) for output rows [q0, q1) of group g; dcol (K, (q1-q0)*wo).  Each input channel
 * belongs to one thread and sums its kh*kw rows in a fixed order. */
static void col2im_rows(const xb_conv2d_desc *d, int n, int g, const float *dcol, int64_t q0, int64_t q1,
                        float *dx) {
    const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, ph = d->ph, pw = d->pw;
    const int h = d->h, w = d->w, ho = d->ho, wo = d->wo;
    const int cing = d->cin / d->groups;
    const int64_t cols = (q1 - q0) * wo, hw = (int64_t)h * w;
    float *dxg = dx + (int64_t)g * cing * n * hw;
#ifdef XB_CONV_AVX512
    if (tiny_map(d, q0, q1)) {
        col2im_tiny(d, dxg, n, q0, q1, dcol);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (int c = 0; c < cing; c++) {
        float *dxc = dxg + (int64_t)c * n * hw;
        for (int ki = 0; ki < kh; ki++)
            for (int kj = 0; kj < kw; kj++) {
                const float *src = dcol + ((int64_t)(c * kh + ki) * kw + kj) * cols;
                int nn = (int)(q0 / ho), oh = (int)(q0 % ho);
                for (int64_t q = q0; q < q1; q++, src += wo) {
                    int ih = oh * sh - ph + ki;
                    if (ih >= 0 && ih < h)
                        scatter_add_row(dxc + (int64_t)nn * hw + (int64_t)ih * w, src, wo, w, sw, kj - pw);
                    if (++oh == ho) { oh = 0; nn++; }
                }
            }
    }
}

void xb_im2col(const xb_conv2d_desc *d, int n, int g, const float *x, float *col) {
    XB_ASSERT(g >= 0 && g < d->groups);
    im2col_rows(d, n, g, x, 0, (int64_t)n * d->ho, col);
}

void xb_col2im(const xb_conv2d_desc *d, int n, int g, const float *dcol, float *dx) {
    XB_ASSERT(g >= 0 && g < d->groups);
    col2im_rows(d, n, g, dcol, 0, (int64_t)n * d->ho, dx);
}

/* y (cout, n*ho*wo) = b (or 0); returns whether the GEMMs accumulate onto y. */
static int init_bias(const xb_conv2d_desc *d, int64_t np, const float *b, float *y) {
    if (!b) return 0;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < d->cout; co++) {
        float *yc = y + (int64_t)co * np, v = b[co];
        for (int64_t i = 0; i < np; i++) yc[i] = v;
    }
    return 1;
}

void xb_conv2d_relu_forward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *b,
                            float *y, float *ws, int relu) {
    const int G = d->groups, cing = d->cin / G, coutg = d->cout / G, K = xb_conv2d_k(d);
    const int64_t np = (int64_t)n * d->ho * d->wo, nhw = (int64_t)n * d->h * d->w;
    const int pw = is_pointwise(d);
    XB_ASSERT(ws != NULL || xb_conv2d_workspace(d, n) == 0);
    float *col = ws + pack_floats(d) + table_floats(d);
    const int64_t rows = (int64_t)n * d->ho, cr = chunk_rows(d, n);
#ifdef XB_CONV_SIMD
    const int imp = use_implicit(d), s = d->sh, T = d->kh * d->kw;
    const int acc = imp ? 0 : init_bias(d, np, b, y); /* the implicit kernel adds b itself */
    int64_t *toff = (int64_t *)(ws + pack_floats(d));
    int32_t *tapidx = (int32_t *)(toff + T);
    uint16_t *mtab = (uint16_t *)(tapidx + T);
    tap_geom gm;
    if (imp) taps_build(&gm, d, n, 0, 0, tapidx, toff, mtab);
#else
    const int acc = init_bias(d, np, b, y);
#endif
    for (int g = 0; g < G; g++) {
        const float *wg = w + (int64_t)g * coutg * K, *xg = x + (int64_t)g * cing * nhw;
        float *yg = y + (int64_t)g * coutg * np;
#ifdef XB_CONV_SIMD
        if (imp) {
            const float *src = xg;
            if (s > 1) {
                phase_split(cing, n, d->h, d->w, s, xg, col);
                src = col;
            }
            pack_rows(coutg, K, wg, K, ws); /* every tap is selected in the forward: A = W */
            conv_s1_fwd(&gm, n, cing, coutg, src, ws, yg, np, b ? b + (int64_t)g * coutg : NULL, 0, relu);
            continue;
        }
        pack_rows(coutg, K, wg, K, ws);
        if (pw) {
            gemm_pk(coutg, np, K, ws, xg, nhw, yg, np, acc, relu);
            continue;
        }
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            im2col_rows(d, n, g, x, q0, q1, col);
            gemm_pk(coutg, cols, K, ws, col, cols, yg + q0 * d->wo, np, acc, relu);
        }
#else
        if (pw) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, coutg, (int)np, K, 1.0f, wg, K, xg,
                        (int)np, (float)acc, yg, (int)np);
            continue;
        }
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            im2col_rows(d, n, g, x, q0, q1, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, coutg, (int)cols, K, 1.0f, wg, K, col,
                        (int)cols, (float)acc, yg + q0 * d->wo, (int)np);
        }
#endif
    }
#ifndef XB_CONV_SIMD
    if (relu) xb_relu_forward((int64_t)d->cout * np, y, y);
#endif
}

void xb_conv2d_forward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *b,
                       float *y, float *ws) {
    xb_conv2d_relu_forward(d, n, x, w, b, y, ws, 0);
}

void xb_conv2d_backward(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db, float *ws) {
    xb_conv2d_backward_ex(d, n, x, w, dy, dx, 1, dw, db, ws);
}

void xb_conv2d_backward_ex(const xb_conv2d_desc *d, int n, const float *x, const float *w, const float *dy,
                           float *dx, int dx_acc, float *dw, float *db, float *ws) {
    const int G = d->groups, cing = d->cin / G, coutg = d->cout / G, K = xb_conv2d_k(d);
    const int64_t np = (int64_t)n * d->ho * d->wo, nhw = (int64_t)n * d->h * d->w;
    if (db) {
#pragma omp parallel for schedule(static)
        for (int co = 0; co < d->cout; co++) {
            const float *g = dy + (int64_t)co * np;
            double s[8] = {0};
            int64_t i = 0;
            for (; i + 8 <= np; i += 8)
                for (int j = 0; j < 8; j++) s[j] += g[i + j];
            for (; i < np; i++) s[0] += g[i];
            db[co] += (float)(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
        }
    }
    if (!dx && !dw) return;
    const int pw = is_pointwise(d);
    XB_ASSERT(ws != NULL || xb_conv2d_workspace(d, n) == 0);
    float *col = ws + pack_floats(d) + table_floats(d);
    const int64_t rows = (int64_t)n * d->ho, cr = chunk_rows(d, n);
#ifdef XB_CONV_SIMD
    const int imp = use_implicit(d), s = d->sh, T = d->kh * d->kw;
    int64_t *toff = (int64_t *)(ws + pack_floats(d));
    int32_t *tapidx = (int32_t *)(toff + T);
    uint16_t *mtab = (uint16_t *)(tapidx + T);
#endif
    for (int g = 0; g < G; g++) {
        const float *wg = w + (int64_t)g * coutg * K, *dyg = dy + (int64_t)g * coutg * np;
        const float *xg = x + (int64_t)g * cing * nhw;
        float *dwg = dw ? dw + (int64_t)g * coutg * K : NULL, *dxg = dx ? dx + (int64_t)g * cing * nhw : NULL;
#ifdef XB_CONV_SIMD
        if (imp) {
            tap_geom gm;
            if (dw) {
                const float *src = xg;
                if (s > 1) {
                    phase_split(cing, n, d->h, d->w, s, xg, col);
                    src = col;
                }
                taps_build(&gm, d, n, 0, 0, tapidx, toff, mtab);
                conv_s1_dw(&gm, cing, coutg, src, dyg, np, (int64_t)n * gm.vpi, dwg, K);
            }
            if (dx) { /* the adjoint conv from dY, per phase plane of dx */
                const int hp = (d->h + s - 1) / s, wp = (d->w + s - 1) / s;
                const int64_t pplane = (int64_t)n * hp * wp;
                for (int ph = 0; ph < s * s; ph++) {
                    float *dst = s == 1 ? dxg : col + (int64_t)ph * cing * pplane;
                    int Tp = taps_build(&gm, d, n, 1, ph, tapidx, toff, mtab);
                    if (Tp == 0) { /* no tap lands on this phase: its dx is zero */
                        if (s > 1 || !dx_acc) memset(dst, 0, sizeof(float) * (size_t)(cing * pplane));
                        continue;
                    }
                    pack_adjoint(cing, coutg, Tp, T, tapidx, wg, ws);
                    conv_s1_fwd(&gm, n, coutg, cing, dyg, ws, dst, pplane, NULL, s == 1 && dx_acc, 0);
                }
                if (s > 1) phase_merge(cing, n, d->h, d->w, s, col, dxg, dx_acc);
            }
            continue;
        }
        if (dx) pack_cols(K, coutg, wg, K, ws); /* A = W_g^T (K x coutg) */
        if (pw) {
            if (dw) gemm_nt_any(coutg, K, np, dyg, np, xg, nhw, dwg, K);
            if (dx) gemm_pk(K, np, coutg, ws, dyg, np, dxg, nhw, dx_acc, 0);
            continue;
        }
        if (dx && !dx_acc) memset(dxg, 0, sizeof(float) * (size_t)(cing * nhw)); /* col2im adds */
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            if (dw) {
                im2col_rows(d, n, g, x, q0, q1, col);
                gemm_nt_any(coutg, K, cols, dyg + q0 * d->wo, np, col, cols, dwg, K);
            }
            if (dx) {
                gemm_pk(K, cols, coutg, ws, dyg + q0 * d->wo, np, col, cols, 0, 0);
                col2im_rows(d, n, g, col, q0, q1, dx);
            }
        }
#else
        if (pw) {
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, coutg, K, (int)np, 1.0f, dyg,
                            (int)np, xg, (int)np, 1.0f, dwg, K);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)np, coutg, 1.0f, wg, K, dyg,
                            (int)np, dx_acc ? 1.0f : 0.0f, dxg, (int)np);
            continue;
        }
        if (dx && !dx_acc) memset(dxg, 0, sizeof(float) * (size_t)(cing * nhw)); /* col2im adds */
        for (int64_t q0 = 0; q0 < rows; q0 += cr) {
            int64_t q1 = q0 + cr < rows ? q0 + cr : rows, cols = (q1 - q0) * d->wo;
            if (dw) {
                im2col_rows(d, n, g, x, q0, q1, col);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, coutg, K, (int)cols, 1.0f,
                            dyg + q0 * d->wo, (int)np, col, (int)cols, 1.0f, dwg, K);
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)cols, coutg, 1.0f, wg, K,
                            dyg + q0 * d->wo, (int)np, 0.0f, col, (int)cols);
                col2im_rows(d, n, g, col, q0, q1, dx);
            }
        }
#endif
    }
}
