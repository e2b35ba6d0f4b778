/* Deformable im2col for stvsr's optional native DCNv2 path (see stvsr/ops/native.py).
 *
 * Plain C (C99 + GCC/Clang vector extensions) with no Python or PyTorch headers: stvsr builds
 * it on first use with the system C compiler (a few seconds) and loads it with ctypes; without a
 * compiler the pure-PyTorch path runs instead. The caller splits output rows across threads.
 *
 * For output pixels in rows [r0, r1) it writes one row of ``cols`` per pixel, holding the
 * modulated bilinear samples of every (deformable group g, kernel tap k, channel ci) in the order
 * ``(g * K + k) * cg + ci``; multiplying by the weight permuted to (Cout, dg, K, cg) gives the
 * DCNv2 output. Sampling coordinates are computed in float (double for the double variant)
 * whatever the storage type of the inputs; corners outside the map read zero (the layout and
 * semantics of torchvision's and BasicSR's kernels, described in stvsr/ops/dcn.py).
 *
 * x is channels-last: element (y, x, c) at y * sy + x * sx + c. Offsets/mask are read through
 * element strides (channel, y, x), so a channel slice of a channels-last map works as is.
 *
 * The file includes itself once per variant (DCN_BODY defined) to stamp out the kernels.
 */
#ifndef DCN_BODY
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float f32_load(float v) { return v; }
static inline float f32_store(float v) { return v; }
static inline double f64_load(double v) { return v; }
static inline double f64_store(double v) { return v; }

static inline float bf16_load(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* round to nearest even; NaN stays NaN (as c10::BFloat16) */
static inline uint16_t bf16_store(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* exp(x) in float without branches or calls, so that loops over it vectorise: reduction by
 * ln 2 and the Cephes minimax polynomial (about 1 ulp); inputs are clamped to [-87, 88] */
static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

/* eight channels at a time (the usual Cin / dg) with vector extensions */
typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));

static inline v8f v8_load_f32(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v8f v8_load_bf16(const uint16_t *p) {
    v8h h;
    memcpy(&h, p, sizeof h);
    const v8u u = __builtin_convertvector(h, v8u) << 16;
    v8f f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void v8_store_f32(float *p, v8f v) { memcpy(p, &v, sizeof v); }

static inline void v8_store_bf16(uint16_t *p, v8f v) {
    v8u u;
    memcpy(&u, &v, sizeof u);
    const v8u nan = (v8u)((u & 0x7fffffffu) > 0x7f800000u);
    v8u r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = (nan & ((u >> 16) | 0x40u)) | (~nan & r);
    const v8h h = __builtin_convertvector(r, v8h);
    memcpy(p, &h, sizeof h);
}

/* most (deformable group, kernel tap) pairs per pixel: per-pixel scratch lives on the stack */
#define DCN_MAX_T 576
int dcn_max_t(void) { return DCN_MAX_T; }

/* whether the kernels share out rows with OpenMP themselves (else the caller uses threads) */
int dcn_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define DCN_BODY
/* name: dcn_cols_<x><offset/mask><cols>; f = float32, b = bfloat16 (uint16 storage), d = double */
#define NAME dcn_cols_ddd
#define XT double
#define XLD f64_load
#define OT double
#define OLD f64_load
#define CT double
#define CST f64_store
#define FT double
#define FLOOR floor
#define FABS fabs
#define SIGM sigmoid_f64
#include __FILE__
#undef NAME
#undef XT
#undef XLD
#undef OT
#undef OLD
#undef CT
#undef CST
#undef FT
#undef FLOOR
#undef FABS
#undef SIGM

#define FT float
#define FLOOR floorf
#define FABS fabsf
#define SIGM sigmoid_f32
#define V8 1

#define NAME dcn_cols_fff
#define XT float
#define XLD f32_load
#define VXLD v8_load_f32
#define OT float
#define OLD f32_load
#define CT float
#define CST f32_store
#define VCST v8_store_f32
#include __FILE__
#undef NAME
#undef CT
#undef CST
#undef VCST
#define NAME dcn_cols_ffb
#define CT uint16_t
#define CST bf16_store
#define VCST v8_store_bf16
#include __FILE__
#undef NAME
#undef OT
#undef OLD
#define NAME dcn_cols_fbb
#define OT uint16_t
#define OLD bf16_load
#include __FILE__
#undef NAME
#undef CT
#undef CST
#undef VCST
#define NAME dcn_cols_fbf
#define CT float
#define CST f32_store
#define VCST v8_store_f32
#include __FILE__
#undef NAME
#undef XT
#undef XLD
#undef VXLD

#define XT uint16_t
#define XLD bf16_load
#define VXLD v8_load_bf16
#define NAME dcn_cols_bbf
#include __FILE__
#undef NAME
#undef CT
#undef CST
#undef VCST
#define NAME dcn_cols_bbb
#define CT uint16_t
#define CST bf16_store
#define VCST v8_store_bf16
#include __FILE__
#undef NAME
#undef OT
#undef OLD
#define NAME dcn_cols_bfb
#define OT float
#define OLD f32_load
#include __FILE__
#undef NAME
#undef CT
#undef CST
#undef VCST
#define NAME dcn_cols_bff
#define CT float
#define CST f32_store
#define VCST v8_store_f32
#include __FILE__

/* version of the calling convention; native.py refuses a library with another */
int dcn_abi_version(void) { return 3; }

#else /* DCN_BODY: one kernel variant */

static double CAT(NAME, _rows)(
    const XT *restrict x, int64_t sy, int64_t sx, int H, int W, int C, int dg,
    const OT *restrict off, int64_t soc, int64_t soy, int64_t sox, const OT *restrict msk,
    int64_t smc, int64_t smy, int64_t smx, int logits, int kh, int kw, int sh, int sw, int ph,
    int pw, int dh, int dw, int Wo, int r0, int r1, CT *restrict cols, int64_t ldc) {
    const int K = kh * kw, cg = C / dg, T = dg * K;
    FT by[DCN_MAX_T], bx[DCN_MAX_T], dys[DCN_MAX_T], dxs[DCN_MAX_T], ms[DCN_MAX_T];
    FT acc[DCN_MAX_T], w00[DCN_MAX_T], w01[DCN_MAX_T], w10[DCN_MAX_T], w11[DCN_MAX_T];
    int64_t gofs[DCN_MAX_T], i00[DCN_MAX_T], i01[DCN_MAX_T], i10[DCN_MAX_T], i11[DCN_MAX_T];
    if (T > DCN_MAX_T || T <= 0) return 0.0; /* the caller checks dcn_max_t() */
    for (int t = 0; t < T; ++t) {
        const int k = t % K;
        by[t] = (FT)((k / kw) * dh - ph);
        bx[t] = (FT)((k % kw) * dw - pw);
        gofs[t] = (int64_t)(t / K) * cg;
    }
    const FT Hf = (FT)H, Wf = (FT)W;
    double total = 0.0;
    for (int oy = r0; oy < r1; ++oy) {
        for (int t = 0; t < T; ++t) acc[t] = 0;
        const FT oyf = (FT)(oy * sh);
        for (int ox = 0; ox < Wo; ++ox) {
            CT *restrict row = cols + ((int64_t)(oy - r0) * Wo + ox) * ldc;
            const OT *op = off + oy * soy + ox * sox;
            const OT *mp = msk + oy * smy + ox * smx;
            const FT oxf = (FT)(ox * sw);
            /* 1. offsets and mask of every (group, tap) into contiguous float arrays */
            if (soc == 1 && smc == 1) {
                for (int t = 0; t < T; ++t) {
                    dys[t] = OLD(op[2 * t]);
                    dxs[t] = OLD(op[2 * t + 1]);
                    ms[t] = OLD(mp[t]);
                }
            } else {
                for (int t = 0; t < T; ++t) {
                    dys[t] = OLD(op[(int64_t)(2 * t) * soc]);
                    dxs[t] = OLD(op[(int64_t)(2 * t + 1) * soc]);
                    ms[t] = OLD(mp[(int64_t)t * smc]);
                }
            }
            if (logits)
                for (int t = 0; t < T; ++t) ms[t] = SIGM(ms[t]);
            /* 2. clamped corner indices and weights (bilinear x modulation; zero for a corner
             * outside the map, all zero for a coordinate outside (-1, size) or not finite) */
            for (int t = 0; t < T; ++t) {
                acc[t] += FABS(dys[t]) + FABS(dxs[t]);
                const FT y = (oyf + by[t]) + dys[t], xx = (oxf + bx[t]) + dxs[t];
                const int in = (y > -1) & (xx > -1) & (y < Hf) & (xx < Wf);
                const FT m = in ? ms[t] : (FT)0;
                const FT yv = in ? y : (FT)0, xv = in ? xx : (FT)0;
                const FT fy = FLOOR(yv), fx = FLOOR(xv);
                const FT ly = yv - fy, lx = xv - fx, hy = 1 - ly, hx = 1 - lx;
                const int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1, x1 = x0 + 1;
                const FT my0 = y0 >= 0 ? m * hy : (FT)0, my1 = y1 < H ? m * ly : (FT)0;
                const int x0ok = x0 >= 0, x1ok = x1 < W;
                w00[t] = x0ok ? my0 * hx : (FT)0;
                w01[t] = x1ok ? my0 * lx : (FT)0;
                w10[t] = x0ok ? my1 * hx : (FT)0;
                w11[t] = x1ok ? my1 * lx : (FT)0;
                const int64_t ya = (int64_t)(y0 < 0 ? 0 : y0) * sy;
                const int64_t yb = (int64_t)(y1 > H - 1 ? H - 1 : y1) * sy;
                const int64_t xa = (int64_t)(x0 < 0 ? 0 : x0) * sx;
                const int64_t xb = (int64_t)(x1 > W - 1 ? W - 1 : x1) * sx;
                i00[t] = gofs[t] + ya + xa;
                i01[t] = gofs[t] + ya + xb;
                i10[t] = gofs[t] + yb + xa;
                i11[t] = gofs[t] + yb + xb;
            }
            /* 3. gather the group's channels at the four corners */
#ifdef V8
            if (cg == 8) {
                for (int t = 0; t < T; ++t) {
                    const v8f v = w00[t] * VXLD(x + i00[t]) + w01[t] * VXLD(x + i01[t]) +
                                  w10[t] * VXLD(x + i10[t]) + w11[t] * VXLD(x + i11[t]);
                    VCST(row + (int64_t)t * 8, v);
                }
                continue;
            }
#endif
            for (int t = 0; t < T; ++t) {
                const XT *a = x + i00[t], *b = x + i01[t], *c = x + i10[t], *d = x + i11[t];
                CT *dst = row + (int64_t)t * cg;
                for (int ci = 0; ci < cg; ++ci)
                    dst[ci] = CST(w00[t] * XLD(a[ci]) + w01[t] * XLD(b[ci]) +
                                  w10[t] * XLD(c[ci]) + w11[t] * XLD(d[ci]));
            }
        }
        for (int t = 0; t < T; ++t) total += (double)acc[t];
    }
    return total;
}

/* rows [r0, r1) into cols; with OpenMP the rows are shared out over the calling thread's team
 * (the OpenMP runtime PyTorch itself uses, so no second thread pool competes with it) */
void NAME(const XT *restrict x, int64_t sy, int64_t sx, int H, int W, int C, int dg,
          const OT *restrict off, int64_t soc, int64_t soy, int64_t sox, const OT *restrict msk,
          int64_t smc, int64_t smy, int64_t smx, int logits, int kh, int kw, int sh, int sw,
          int ph, int pw, int dh, int dw, int Wo, int r0, int r1, CT *restrict cols,
          int64_t ldc, double *abs_sum) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int oy = r0; oy < r1; ++oy)
        total += CAT(NAME, _rows)(x, sy, sx, H, W, C, dg, off, soc, soy, sox, msk, smc, smy, smx,
                                  logits, kh, kw, sh, sw, ph, pw, dh, dw, Wo, oy, oy + 1,
                                  cols + (int64_t)(oy - r0) * Wo * ldc, ldc);
    if (abs_sum) *abs_sum = total;
}

#endif /* DCN_BODY */
