"""Token-major Mamba mixer kernels for CUDA (compiled at first use with NVRTC through PyTorch): the
depthwise conv + silu and the selective scan, as ``mixer_cuda.bimamba_rows`` runs them for both
directions of a BiMamba block ("add", in/out projections tied).

Reference twin: ``caduceus_cli.kernels.mixer_ref`` (plain PyTorch, same functions).

All tensors are token-major (``(n*L, channels)``, channels contiguous), so that every step of the
scan reads one contiguous vector of channels:

    u_f, u_r = silu(causal_depthwise_conv(x) + conv_bias)       (``conv_silu_pair``: x read once; the
                                                                 reverse conv runs along the row backwards)
    per direction (the reverse one walks each row backwards, everything stays in row order), with
    xdbl = u @ W_xproj^T = [dt_low | B | C]:
      y = scan(u, xdbl): delta = softplus(W_dt dt_low + dt_bias) computed per step in registers,
          h_t = exp(delta A) h_{t-1} + delta u B_t,  y_t = C_t . h_t + D u_t
                                                                (``scan_full`` / ``scan_state`` / ``scan_combine``)
    the reverse direction's ``scan_full`` can also add y_f and apply the gate once to the sum:
      y = (y_f + y_r) * silu(z)                                 (silu(z_t) multiplies both at token t)

The scan keeps the 16 states of one channel in one thread's registers; a block of CH threads
covers CH channels of one sequence and one chunk of positions, and stages TT positions at a
time (u, z with cp.async; dt_low/B/C as float) through double-buffered shared memory. When
rows x channel blocks do not fill the GPU (long single sequences), positions are cut into K
chunks: ``scan_state`` runs chunks 0..K-2 from a zero state and keeps their end state and
summed delta (the chunk's decay is exp(A * sum(delta))); ``scan_combine`` carries the true
start state across chunks; ``scan_full`` reruns every chunk from its start state and writes y.
With many chunks the state pass also runs the last one and writes delta (float32) for every
position, which ``scan_full`` reads instead of recomputing the dt projection and softplus
(``reuse_delta``: ~22% fewer instructions in its position loop, 2 fewer MUFU operations).
Optionally the first NPOLY of the 16 decays use a degree-5 polynomial on the FMA pipe instead of
the MUFU ex2 unit (``CADUCEUS_SCAN_NPOLY``; default 0: on the H100 it gained nothing, the kernel
being latency/issue bound rather than exp bound). Measurements and the floor: bench/README.md.
Numerics: float32 state and arithmetic; ex2/lg2/rcp.approx (rel. err ~2^-22); softplus as
mamba-ssm's (``v > 20 ? v : log1p(exp(v))``, log1p by a series below exp(v) = 0.03).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

LOG2E = 1.4426950408889634

_COMMON_SOURCE = r"""
#define LOG2E_F 1.4426950408889634f
#if IS_BF16
typedef unsigned short st_t;
__device__ __forceinline__ float tof(st_t v) { return __uint_as_float(((unsigned int)v) << 16); }
__device__ __forceinline__ st_t fromf(float f) {
    unsigned int b = __float_as_uint(f);
    b += 0x7FFFu + ((b >> 16) & 1u);
    return (st_t)(b >> 16);
}
#else
typedef float st_t;
__device__ __forceinline__ float tof(st_t v) { return v; }
__device__ __forceinline__ st_t fromf(float f) { return f; }
#endif
#define VEC (16 / (int)sizeof(st_t))

__device__ __forceinline__ float ex2(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ __forceinline__ float lg2(float x) { float y; asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ __forceinline__ float rcp(float x) { float y; asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }

// 2^x on the FMA pipe: x = j + f, f in [-0.5, 0.5]; 2^f by a degree-5 polynomial (rel. err 2.5e-7)
__device__ __forceinline__ float ex2_poly(float x) {
    x = fmaxf(x, -125.f);
    const float t = x + 12582912.f;           // 1.5 * 2^23: rounds x to an integer in the low mantissa bits
    const float f = x - (t - 12582912.f);
    float p = 0.0013400432653725147f;
    p = fmaf(p, f, 0.009676037356257439f);
    p = fmaf(p, f, 0.05550327152013779f);
    p = fmaf(p, f, 0.2402210682630539f);
    p = fmaf(p, f, 0.6931471824645996f);
    p = fmaf(p, f, 1.0000001192092896f);
    return __uint_as_float(__float_as_uint(t) * (1u << 23) + __float_as_uint(p));  // exponent += j
}

__device__ __forceinline__ float silu(float v) { return v * rcp(1.f + ex2(-v * LOG2E_F)); }

// softplus as mamba-ssm: v > 20 ? v : log1p(exp(v)); log1p by a series below 0.03
__device__ __forceinline__ float softplus(float v) {
    const float e = ex2(v * LOG2E_F);
    const float s = e * fmaf(e, fmaf(e, fmaf(e, -0.25f, 0.33333334f), -0.5f), 1.f);
    const float l = lg2(1.f + e) * 0.6931471805599453f;
    return v > 20.f ? v : (e < 0.03f ? s : l);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_wait0() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
__device__ __forceinline__ void cp_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

"""

_CONV_SOURCE = r"""
// u = silu(conv(x) + b): x (n*L, d) with row stride ldx; u (n*L, d) dense; wt (DC, d) (transposed);
// REV: the conv of the row read backwards (position p of the walk is row position L-1-p; u is stored
// at the same row positions, so the reverse direction needs no flipped copy of x or u);
// one thread per (4 channels, TOK consecutive positions of one row): the DC-1 previous inputs slide
// in registers, weights and bias load once as coalesced 16-byte vectors; 8-byte (bf16) or 16-byte
// (float32) loads and stores.
#define TOK 8
#define CV 4                                         // channels per thread (8- or 16-byte vectors)
#if IS_BF16
typedef uint2 cvec_t;
#else
typedef uint4 cvec_t;
#endif
// this thread's (row, first channel, first position); false past the last (4 channels, TOK positions) group
__device__ __forceinline__ bool conv_thread(int ntok, int L, int d, long long& row, int& c0, int& p0) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int groups = d / CV;
    const int tpr = (L + TOK - 1) / TOK;
    if (i >= (long long)(ntok / L) * tpr * groups) return false;
    const long long rest = i / groups;
    row = rest / tpr;
    c0 = (int)(i % groups) * CV;
    p0 = (int)(rest % tpr) * TOK;
    return true;
}

// this thread's CV channels' taps and bias from wt (DC, d) and cb (d,), as 16-byte vectors
__device__ __forceinline__ void conv_params(const float* __restrict__ wt, const float* __restrict__ cb, int d, int c0,
                                            float (&w)[DC][CV], float (&b)[CV]) {
#pragma unroll
    for (int q = 0; q < CV / 4; ++q) {
#pragma unroll
        for (int k = 0; k < DC; ++k) {
            const float4 v = *reinterpret_cast<const float4*>(wt + k * d + c0 + 4 * q);
            w[k][4 * q] = v.x; w[k][4 * q + 1] = v.y; w[k][4 * q + 2] = v.z; w[k][4 * q + 3] = v.w;
        }
        const float4 v = *reinterpret_cast<const float4*>(cb + c0 + 4 * q);
        b[4 * q] = v.x; b[4 * q + 1] = v.y; b[4 * q + 2] = v.z; b[4 * q + 3] = v.w;
    }
}

extern "C" __global__ void __launch_bounds__(128, 8) conv_silu(const st_t* __restrict__ x, st_t* __restrict__ u, const float* __restrict__ wt,
                                     const float* __restrict__ cb, int ntok, int L, int d, int ldx) {
    long long row;
    int c0, p0;
    if (!conv_thread(ntok, L, d, row, c0, p0)) return;
    float w[DC][CV], acc0[CV], win[DC][CV];
    conv_params(wt, cb, d, c0, w, acc0);
    const st_t* xrow = x + row * L * (long long)ldx + c0;
    st_t* urow = u + row * L * (long long)d + c0;
    auto at = [&](int p) { return (long long)(REV ? L - 1 - p : p); };  // walk position -> row position
#pragma unroll
    for (int k = 0; k < DC - 1; ++k) {               // positions p0 - (DC-1) + k
        const int p = p0 - (DC - 1) + k;
        cvec_t raw = cvec_t{};
        if (p >= 0) raw = *reinterpret_cast<const cvec_t*>(xrow + at(p) * ldx);
        const st_t* v = reinterpret_cast<const st_t*>(&raw);
#pragma unroll
        for (int j = 0; j < CV; ++j) win[k][j] = tof(v[j]);
    }
    if (p0 + TOK <= L) {                             // whole block of positions: every load issued first
        cvec_t raw[TOK];
#pragma unroll
        for (int s = 0; s < TOK; ++s) raw[s] = *reinterpret_cast<const cvec_t*>(xrow + at(p0 + s) * ldx);
#pragma unroll
        for (int s = 0; s < TOK; ++s) {
            const st_t* v = reinterpret_cast<const st_t*>(&raw[s]);
#pragma unroll
            for (int j = 0; j < CV; ++j) win[DC - 1][j] = tof(v[j]);
            cvec_t outv;
            st_t* o = reinterpret_cast<st_t*>(&outv);
#pragma unroll
            for (int j = 0; j < CV; ++j) {
                float a = acc0[j];
#pragma unroll
                for (int k = 0; k < DC; ++k) a = fmaf(w[k][j], win[k][j], a);
                o[j] = fromf(silu(a));
            }
            *reinterpret_cast<cvec_t*>(urow + at(p0 + s) * d) = outv;
#pragma unroll
            for (int k = 0; k < DC - 1; ++k)
#pragma unroll
                for (int j = 0; j < CV; ++j) win[k][j] = win[k + 1][j];
        }
        return;
    }
    for (int p = p0; p < L; ++p) {                   // the row's last, partial block
        const cvec_t raw = *reinterpret_cast<const cvec_t*>(xrow + at(p) * ldx);
        const st_t* v = reinterpret_cast<const st_t*>(&raw);
#pragma unroll
        for (int j = 0; j < CV; ++j) win[DC - 1][j] = tof(v[j]);
        cvec_t outv;
        st_t* o = reinterpret_cast<st_t*>(&outv);
#pragma unroll
        for (int j = 0; j < CV; ++j) {
            float a = acc0[j];
#pragma unroll
            for (int k = 0; k < DC; ++k) a = fmaf(w[k][j], win[k][j], a);
            o[j] = fromf(silu(a));
        }
        *reinterpret_cast<cvec_t*>(urow + at(p) * d) = outv;
#pragma unroll
        for (int k = 0; k < DC - 1; ++k)
#pragma unroll
            for (int j = 0; j < CV; ++j) win[k][j] = win[k + 1][j];
    }
}

// Both directions from one read of x: u_f = conv_silu(x) and u_r = conv_silu(x, REV) with their own
// weights and biases, same arithmetic (bit for bit). One thread per (4 channels, TOK positions of one
// row) in row order: the window x[p0-(DC-1) .. p0+TOK-1+(DC-1)] is loaded once (zero outside the row);
// forward taps look back, reverse taps look ahead: u_r[p] = b_r + sum_k w_r[k] x[p + DC-1-k].
#define WIN (TOK + 2 * (DC - 1))
extern "C" __global__ void __launch_bounds__(128, 4) conv_silu_pair(
    const st_t* __restrict__ x, st_t* __restrict__ uf, st_t* __restrict__ ur, const float* __restrict__ wtf,
    const float* __restrict__ cbf, const float* __restrict__ wtr, const float* __restrict__ cbr,
    int ntok, int L, int d, int ldx) {
    long long row;
    int c0, p0;
    if (!conv_thread(ntok, L, d, row, c0, p0)) return;
    float wf[DC][CV], wr[DC][CV], bf[CV], br[CV];
    conv_params(wtf, cbf, d, c0, wf, bf);
    conv_params(wtr, cbr, d, c0, wr, br);
    const st_t* xrow = x + row * L * (long long)ldx + c0;
    const long long o = row * L * (long long)d + c0;
    cvec_t raw[WIN];                                 // window slot s: row position p0 - (DC-1) + s
#pragma unroll
    for (int s = 0; s < WIN; ++s) {
        const int p = p0 - (DC - 1) + s;
        raw[s] = (p >= 0 && p < L) ? *reinterpret_cast<const cvec_t*>(xrow + (long long)p * ldx) : cvec_t{};
    }
    auto xv = [&](int s, int j) { return tof(reinterpret_cast<const st_t*>(&raw[s])[j]); };
#pragma unroll
    for (int s = 0; s < TOK; ++s) {
        if (p0 + s >= L) break;                      // the row's last, partial block
        cvec_t of, orv;
        st_t* a = reinterpret_cast<st_t*>(&of);
        st_t* b = reinterpret_cast<st_t*>(&orv);
#pragma unroll
        for (int j = 0; j < CV; ++j) {
            float f = bf[j], r = br[j];
#pragma unroll
            for (int k = 0; k < DC; ++k) {
                f = fmaf(wf[k][j], xv(s + k, j), f);
                r = fmaf(wr[k][j], xv(s + 2 * (DC - 1) - k, j), r);
            }
            a[j] = fromf(silu(f));
            b[j] = fromf(silu(r));
        }
        *reinterpret_cast<cvec_t*>(uf + o + (long long)(p0 + s) * d) = of;
        *reinterpret_cast<cvec_t*>(ur + o + (long long)(p0 + s) * d) = orv;
    }
}
"""

_SCAN_SOURCE = r"""
#define XW (RK + 2 * NS)
constexpr int kUnroll = UNR;

// One chunk of one sequence for CH channels. FULL: start from hbuf (chunk > 0) and write y;
// else: start from zero, write the end state to hbuf[b, k] and sum(delta) to Sbuf[b, k].
// ADD: ya (may be y itself) added to C.h + D u before the gate; GATE: times silu(z), else z is not
// read. DOUT: delta (float32, (n*L, d)) written to dl; DIN: delta read from dl (staged like u) instead
// of computed, and only B | C of xdbl staged. rev: the row is walked backwards (step q reads and
// writes row position L-1-q; chunks and states follow the walk), all tensors stay in row order.
template <bool FULL, bool ADD, bool GATE, bool DIN, bool DOUT>
__device__ __forceinline__ void scan_chunk(
    const st_t* u, const st_t* __restrict__ z, const st_t* __restrict__ xd, st_t* y, const st_t* ya,
    const float* __restrict__ Wdt, const float* __restrict__ dtb, const float* __restrict__ A2,
    const float* __restrict__ Dp, float* __restrict__ hbuf, float* __restrict__ Sbuf, float* dl,
    int L, int d, int chunk, int K, int ldz, int rev) {
    constexpr int XO = DIN ? RK : 0;                  // first staged xdbl column
    constexpr int XS = XW - XO;                       // staged xdbl columns per position
    __shared__ __align__(16) st_t us[2][TT][CH];
    constexpr bool ZT = FULL && GATE;                 // z tiles staged
    __shared__ __align__(16) st_t zs[ZT ? 2 : 1][ZT ? TT : 1][CH];
    __shared__ __align__(16) st_t as[ADD ? 2 : 1][ADD ? TT : 1][CH];
    __shared__ __align__(16) float ds[DIN ? 2 : 1][DIN ? TT : 1][CH];
    __shared__ __align__(16) float xs[2][TT][XS];

    const int tid = threadIdx.x;
    const int c0 = blockIdx.x * CH;
    const int ch = c0 + tid;
    const int k = blockIdx.y;
    const int b = blockIdx.z;
    const int t0 = k * chunk;
    const int t1 = min(L, t0 + chunk);
    const long long row0 = (long long)b * L;
    auto at = [&](int q) { return row0 + (rev ? L - 1 - q : q); };  // walk position -> token index
    const int ntiles = (t1 - t0 + TT - 1) / TT;

    float w[RK], a2[NS], h[NS];
#pragma unroll
    for (int r = 0; r < (DIN ? 0 : RK); ++r) w[r] = Wdt[ch * RK + r];
#pragma unroll
    for (int n = 0; n < NS; ++n) a2[n] = A2[ch * NS + n];
    const float bias = DIN ? 0.f : dtb[ch];
    const float Dv = FULL ? Dp[ch] : 0.f;
    if (FULL && k > 0) {
        const float* hs = hbuf + ((long long)(b * K + k - 1) * d + ch) * NS;
#pragma unroll
        for (int n = 0; n < NS; ++n) h[n] = hs[n];
    } else {
#pragma unroll
        for (int n = 0; n < NS; ++n) h[n] = 0.f;
    }
    float S = 0.f;

    constexpr int VPR = CH / VEC;                  // 16-byte vectors per row of a u / z tile
    constexpr int XPT = (TT * XS + CH - 1) / CH;   // staged xdbl elements per thread per tile
    st_t xreg[XPT];  // next tile's xdbl, raw: converted in store_x, so the loads' latency hides under this tile's steps

    auto issue_uz = [&](int tile, int buf) {
        const int tb = t0 + tile * TT;
        const int rows = min(TT, t1 - tb);
        for (int v = tid; v < TT * VPR; v += CH) {
            const int r = v / VPR, c = (v - r * VPR) * VEC;
            if (r < rows) {
                const long long tok = at(tb + r);
                cp_async16(&us[buf][r][c], u + tok * d + c0 + c);
                if (ZT) cp_async16(&zs[ZT ? buf : 0][ZT ? r : 0][c], z + tok * ldz + c0 + c);
                if (ADD) cp_async16(&as[ADD ? buf : 0][ADD ? r : 0][c], ya + tok * d + c0 + c);
            }
        }
        if (DIN) {
            for (int v = tid; v < TT * (CH / 4); v += CH) {   // delta: float, 4 per 16-byte vector
                const int r = v / (CH / 4), c = (v - r * (CH / 4)) * 4;
                if (r < rows) cp_async16(&ds[DIN ? buf : 0][DIN ? r : 0][c], dl + at(tb + r) * d + c0 + c);
            }
        }
        cp_commit();
    };
    auto load_x = [&](int tile) {
        const int tb = t0 + tile * TT;
        const int rows = min(TT, t1 - tb);
#pragma unroll
        for (int j = 0; j < XPT; ++j) {
            const int e = tid + j * CH;
            const int r = e / XS, c = e - r * XS;
            xreg[j] = (e < TT * XS && r < rows) ? xd[at(tb + r) * XW + XO + c] : (st_t)0;
        }
    };
    auto store_x = [&](int buf) {
#pragma unroll
        for (int j = 0; j < XPT; ++j) {
            const int e = tid + j * CH;
            if (e < TT * XS) xs[buf][e / XS][e % XS] = tof(xreg[j]);
        }
    };

    float* dout = DOUT ? dl + at(t0) * d + ch : nullptr;   // this channel's delta at each step of the walk
    const long long dstep = rev ? -(long long)d : (long long)d;
    issue_uz(0, 0);
    load_x(0);
    store_x(0);
    for (int it = 0; it < ntiles; ++it) {
        const int cur = it & 1;
        __syncthreads();                            // everyone is done with buffer cur ^ 1
        const bool more = it + 1 < ntiles;
        if (more) { issue_uz(it + 1, cur ^ 1); load_x(it + 1); cp_wait1(); } else { cp_wait0(); }
        __syncthreads();                            // tile it is in shared memory
        const int rows = min(TT, t1 - (t0 + it * TT));
#pragma unroll kUnroll
        for (int t = 0; t < rows; ++t) {
            const float* xr = xs[cur][t];           // [dt_low |] B | C of step t: broadcast reads
            float delta;
            if constexpr (DIN) {
                delta = ds[DIN ? cur : 0][DIN ? t : 0][tid];
            } else {
                float dp[4] = {bias, 0.f, 0.f, 0.f};    // dt projection in 4 independent chains
#pragma unroll
                for (int r = 0; r < RK; ++r) dp[r & 3] = fmaf(w[r], xr[r], dp[r & 3]);
                delta = softplus((dp[0] + dp[1]) + (dp[2] + dp[3]));
            }
            if constexpr (DOUT) { *dout = delta; dout += dstep; }
            const float uu = tof(us[cur][t][tid]);
            const float du = delta * uu;
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int n = 0; n < NS; ++n) {
                const float e = delta * a2[n];
                const float dA = (n < NPOLY) ? ex2_poly(e) : ex2(e);
                h[n] = fmaf(dA, h[n], du * xr[RK - XO + n]);
                if (FULL) acc[n & 3] = fmaf(h[n], xr[RK - XO + NS + n], acc[n & 3]);
            }
            if (FULL) {
                float yv = fmaf(uu, Dv, (acc[0] + acc[1]) + (acc[2] + acc[3]));
                if (ADD) yv += tof(as[ADD ? cur : 0][ADD ? t : 0][tid]);
                if (GATE) yv *= silu(tof(zs[ZT ? cur : 0][ZT ? t : 0][tid]));
                us[cur][t][tid] = fromf(yv);        // y over u
            } else {
                S += delta;
            }
        }
        if (FULL) {
            __syncthreads();                        // y tile complete
            for (int v = tid; v < TT * VPR; v += CH) {
                const int r = v / VPR, c = (v - r * VPR) * VEC;
                if (r < rows)
                    *reinterpret_cast<uint4*>(y + at(t0 + it * TT + r) * d + c0 + c) =
                        *reinterpret_cast<const uint4*>(&us[cur][r][c]);
            }
        }
        if (more) store_x(cur ^ 1);
    }
    if (!FULL) {
        float* hs = hbuf + ((long long)(b * K + k) * d + ch) * NS;
#pragma unroll
        for (int n = 0; n < NS; ++n) hs[n] = h[n];
        Sbuf[(long long)(b * K + k) * d + ch] = S;
    }
}

// WITH_ADD, WITH_GATE, WITH_DELTA (defines: the y_f, z and delta tiles take shared memory only in the
// modules that use them). WITH_DELTA: scan_state writes every chunk's delta to dl, scan_full reads it.
extern "C" __global__ void __launch_bounds__(CH, MINB) scan_full(
    const st_t* u, const st_t* __restrict__ z, const st_t* __restrict__ xd, st_t* y, const st_t* ya,
    const float* __restrict__ Wdt, const float* __restrict__ dtb, const float* __restrict__ A2,
    const float* __restrict__ Dp, float* __restrict__ hbuf, float* __restrict__ Sbuf, const float* __restrict__ dl,
    int L, int d, int chunk, int K, int ldz, int rev) {
    scan_chunk<true, (bool)WITH_ADD, (bool)WITH_GATE, (bool)WITH_DELTA, false>(
        u, z, xd, y, ya, Wdt, dtb, A2, Dp, hbuf, Sbuf, const_cast<float*>(dl), L, d, chunk, K, ldz, rev);
}

extern "C" __global__ void __launch_bounds__(CH, MINB) scan_state(
    const st_t* u, const st_t* __restrict__ xd,
    const float* __restrict__ Wdt, const float* __restrict__ dtb, const float* __restrict__ A2,
    float* __restrict__ hbuf, float* __restrict__ Sbuf, float* __restrict__ dl, int L, int d, int chunk, int K, int rev) {
    scan_chunk<false, false, false, false, (bool)WITH_DELTA>(
        u, u, xd, nullptr, nullptr, Wdt, dtb, A2, nullptr, hbuf, Sbuf, dl, L, d, chunk, K, d, rev);
}

// hbuf[b, k] (end state of chunk k from zero) -> the true state at the end of chunk k, k < K-1.
// One block per 32 consecutive (b, channel, state) values, one per lane; its CW warps cut the K-1
// chunks into CW segments. Each warp folds its segment from zero (decay product, end state), the
// segments are chained through shared memory, then each warp walks its segment again from its
// carry and writes the true states. Loads are batched 8 chunks at a time. CW: COMBINE_WARPS.
extern "C" __global__ void __launch_bounds__(32 * CW) scan_combine(
    float* __restrict__ hbuf, const float* __restrict__ Sbuf, const float* __restrict__ A2, int nseq, int d, int K) {
    __shared__ float segD[CW][32], segH[CW][32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const long long per = (long long)d * NS;         // (channel, state) values per sequence
    const long long gi = (long long)blockIdx.x * 32 + lane;
    const bool ok = gi < (long long)nseq * per;
    const int b = ok ? (int)(gi / per) : 0;
    const int cn = ok ? (int)(gi % per) : 0;         // ch * NS + n
    const int ch = cn / NS;
    const float a = A2[cn];
    const int km = K - 1, seg = (km + CW - 1) / CW;
    const int k0 = min(km, w * seg), k1 = min(km, k0 + seg);
    auto hidx = [&](int k) { return ((long long)b * K + k) * per + cn; };
    auto sidx = [&](int k) { return ((long long)b * K + k) * d + ch; };
    float hv[8], dv[8];
    auto load8 = [&](int kb) {                        // chunks past the segment: decay 1, state 0
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const bool in = ok && kb + j < k1;
            hv[j] = in ? hbuf[hidx(kb + j)] : 0.f;
            dv[j] = in ? ex2(a * Sbuf[sidx(kb + j)]) : 1.f;
        }
    };
    float dprod = 1.f, h = 0.f;
    for (int kb = k0; kb < k1; kb += 8) {
        load8(kb);
#pragma unroll
        for (int j = 0; j < 8; ++j) { h = fmaf(dv[j], h, hv[j]); dprod *= dv[j]; }
    }
    segD[w][lane] = dprod;
    segH[w][lane] = h;
    __syncthreads();
    float c = 0.f;                                    // the true state at the start of this segment
    for (int v = 0; v < w; ++v) c = fmaf(segD[v][lane], c, segH[v][lane]);
    for (int kb = k0; kb < k1; kb += 8) {
        load8(kb);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            if (kb + j < k1) {
                c = fmaf(dv[j], c, hv[j]);
                if (ok) hbuf[hidx(kb + j)] = c;
            }
        }
    }
}
"""

CONV_CHANNELS = 4  # channels per thread of conv_silu (CV in the source)
CONV_TOK = 8  # positions per thread of conv_silu (TOK in the source)
COMBINE_WARPS = 16  # warps per block of scan_combine, one segment of chunks each (CW in the source)
# positions per shared-memory tile (bf16 / float32 storage)
TT_BF16, TT_F32 = int(os.environ.get("CADUCEUS_SCAN_TILE", "16")), 16
STATIC_SMEM = 48 * 1024  # static shared memory per block: the tiles must fit it (``fit_tile``)
DEFAULT_NPOLY = int(os.environ.get("CADUCEUS_SCAN_NPOLY", "0"))  # measured: bench/results/scan_fused_h100.json
DEFAULT_UNROLL = int(os.environ.get("CADUCEUS_SCAN_UNROLL", "1"))
DEFAULT_MIN_BLOCKS = int(os.environ.get("CADUCEUS_SCAN_MINB", "4"))  # __launch_bounds__ minimum blocks per SM (bf16)
# chunks per row from which the state pass hands delta to the full pass (it then runs the last chunk too,
# 1 / (K-1) more of its work, against the dt projection and softplus of every full-pass position);
# measured at K = 256 (one 131k row) only: 8 is where the extra chunk costs ~1/7 of the saving
DELTA_MIN_CHUNKS = 8


def _cuda_kernel_api():
    from torch.cuda._utils import _cuda_load_module, _nvrtc_compile

    return _nvrtc_compile, _cuda_load_module


@functools.cache
def available() -> str:
    """'' when the kernels can be compiled and launched here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA GPU visible"
    if torch.version.hip:
        return "ROCm build"
    try:
        _cuda_kernel_api()
        nvrtc_module(
            _CONV_SOURCE,
            (("IS_BF16", 1), ("DC", 4), ("REV", 0)),
            ("conv_silu", "conv_silu_pair"),
            torch.cuda.current_device(),
        )
    except Exception as exc:  # no NVRTC in this torch build, or it cannot compile here
        return f"NVRTC kernels unavailable ({type(exc).__name__}: {str(exc)[:200]})"
    return ""


@functools.cache
def nvrtc_module(source: str, defines: tuple, names: tuple, device: int) -> dict:
    """Compile ``source`` (after ``defines`` and the common helpers) once per (defines, device) and load ``names``."""
    compile_, load = _cuda_kernel_api()
    header = "".join(f"#define {k} {v}\n" for k, v in defines)
    with torch.cuda.device(device):
        cubin, _ = compile_(header + _COMMON_SOURCE + source, names[0], nvcc_options=["-std=c++17"])
        return load(cubin, list(names))


def device_index(t: torch.Tensor) -> int:
    return t.device.index if t.device.index is not None else torch.cuda.current_device()


def _block_channels(d: int) -> int:
    for ch in (128, 64, 32):
        if d % ch == 0:
            return ch
    raise ValueError(f"d_inner {d} is not a multiple of 32")


def supports(d_inner: int, dtype: torch.dtype) -> bool:
    return d_inner % 32 == 0 and dtype in (torch.bfloat16, torch.float32)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _conv_module(x: torch.Tensor, d_conv: int, reverse: bool) -> dict:
    defines = (("IS_BF16", int(x.dtype == torch.bfloat16)), ("DC", d_conv), ("REV", int(reverse)))
    return nvrtc_module(_CONV_SOURCE, defines, ("conv_silu", "conv_silu_pair"), device_index(x))


ConvParams = tuple[torch.Tensor, torch.Tensor]  # (weight transposed to (d_conv, d), bias (d,)), float32


def conv_params(weight: torch.Tensor, bias: torch.Tensor) -> ConvParams:
    """A conv's weight (d, d_conv) and bias (d,) as the conv kernels read them: (d_conv, d) and (d,), float32."""
    d = weight.shape[0]
    return weight.float().reshape(d, -1).t().contiguous(), bias.float().contiguous()  # (DC, d), (d,)


def _launch_conv(
    name: str,
    x: torch.Tensor,
    length: int,
    reverse: bool,
    outs: tuple[torch.Tensor, ...],
    convs: tuple[ConvParams, ...],
) -> None:
    """One conv kernel over x (n*L, d): one thread per (CONV_CHANNELS channels, CONV_TOK positions of a row);
    args x, the outputs, each conv's ``conv_params``, then ntok, L, d, x's row stride."""
    ntok, d = x.shape
    d_conv = convs[0][0].shape[0]
    assert x.stride(1) == 1 and ntok % length == 0 and d % CONV_CHANNELS == 0
    assert x.data_ptr() % 16 == 0 and (x.stride(0) * x.element_size()) % 16 == 0
    assert all(w.shape == (d_conv, d) and w.is_contiguous() and b.shape == (d,) for w, b in convs)
    total = (ntok // length) * cdiv(length, CONV_TOK) * (d // CONV_CHANNELS)
    _conv_module(x, d_conv, reverse)[name](
        grid=(cdiv(total, 128), 1, 1),
        block=(128, 1, 1),
        args=[x, *outs, *(t for conv in convs for t in conv), ntok, length, d, x.stride(0)],
    )


def conv_silu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, length: int, reverse: bool = False
) -> torch.Tensor:
    """u = silu(causal depthwise conv(x) + bias), rows of ``length`` tokens: x (n*L, d) token-major -> (n*L, d).

    ``weight`` (d, d_conv); x may be a column slice (row stride >= d, 16-byte aligned rows).
    ``reverse``: the conv of each row read backwards (causal in the reversed order), stored in row
    order: ``flip_L(conv_silu(flip_L(x)))`` without the two flipped copies.
    """
    u = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    _launch_conv("conv_silu", x, length, reverse, (u,), (conv_params(weight, bias),))
    return u


def conv_silu_pair(
    x: torch.Tensor, conv_f: tuple[torch.Tensor, torch.Tensor], conv_r: tuple[torch.Tensor, torch.Tensor], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(conv_silu(x, *conv_f, length), conv_silu(x, *conv_r, length, reverse=True))`` from one read of x
    (bit for bit the same values); ``conv_*`` = (weight (d, d_conv), bias (d,))."""
    return conv_pair_prepared(x, conv_params(*conv_f), conv_params(*conv_r), length)


def conv_pair_prepared(
    x: torch.Tensor, conv_f: ConvParams, conv_r: ConvParams, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv_silu_pair`` with the convs' weights already in ``conv_params`` form."""
    u_f = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    u_r = torch.empty_like(u_f)
    _launch_conv("conv_silu_pair", x, length, False, (u_f, u_r), (conv_f, conv_r))
    return u_f, u_r


def fit_tile(tt: int, esz: int, ch: int, ns: int, rk: int, gate: bool, add: bool, delta: bool) -> int:
    """The largest tile of at most ``tt`` positions (halving) whose double-buffered shared-memory tiles
    fit ``STATIC_SMEM`` in both scan kernels: u, z (gate), y_f (add) as storage type, delta and the
    staged xdbl columns (B | C with delta, else dt_low | B | C) as float; unused tiles take one row."""

    def smem(t: int, full: bool) -> int:
        rows = [2 * t, 2 * t if full and gate else 1, 2 * t if full and add else 1]
        xs_cols = 2 * ns if full and delta else rk + 2 * ns
        return sum(rows) * ch * esz + (2 * t if full and delta else 1) * ch * 4 + 2 * t * xs_cols * 4

    while tt > 1 and max(smem(tt, True), smem(tt, False)) > STATIC_SMEM:
        tt //= 2
    return tt


def pick_chunk(nseq: int, d: int, length: int, tt: int, ch: int) -> int:
    """Positions per chunk: whole rows when rows x channel blocks make two blocks per SM or more,
    else enough chunks for about eight blocks per SM (tile multiples)."""
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    blocks = nseq * (d // ch)
    if blocks >= 2 * sms or length <= 4 * tt:
        return length
    k = min(cdiv(8 * sms, blocks), length // (4 * tt))
    return cdiv(cdiv(length, k), tt) * tt


@dataclass(frozen=True)
class ScanWeights:
    """One direction's scan parameters as the scan kernels read them (float32, contiguous)."""

    dt_weight: torch.Tensor  # (d, R)
    dt_bias: torch.Tensor  # (d,)
    A2: torch.Tensor  # (d, N): A * log2(e), so that exp(delta A) = ex2(delta A2)
    D: torch.Tensor  # (d,)

    @staticmethod
    def of(dt_weight: torch.Tensor, dt_bias: torch.Tensor, A: torch.Tensor, D: torch.Tensor) -> ScanWeights:
        f = lambda t: t.float().contiguous()  # noqa: E731
        return ScanWeights(f(dt_weight), f(dt_bias), (A.float() * LOG2E).contiguous(), f(D))


def selective_scan_tm(
    u: torch.Tensor,
    z: torch.Tensor | None,
    xdbl: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    length: int,
    chunk: int | None = None,
    npoly: int | None = None,
    out: torch.Tensor | None = None,
    unroll: int | None = None,
    tile: int | None = None,
    min_blocks: int | None = None,
    reverse: bool = False,
    add: torch.Tensor | None = None,
    gate: bool = True,
    reuse_delta: bool | None = None,
) -> torch.Tensor:
    """Selective scan on token-major tensors (twin: ``mixer_ref.selective_scan_tm_ref``).

    u (n*L, d) dense, z (n*L, d) (row stride may exceed d), xdbl (n*L, R + 2N) = [dt_low | B | C];
    delta = softplus(dt_low @ dt_weight^T + dt_bias); A (d, N); y = (C.h + D*u + add) * silu(z) -> (n*L, d),
    rounded once. The other arguments: ``scan_prepared``'s.
    """
    return scan_prepared(
        u, z, xdbl, ScanWeights.of(dt_weight, dt_bias, A, D), length,
        chunk=chunk, npoly=npoly, out=out, unroll=unroll, tile=tile, min_blocks=min_blocks,
        reverse=reverse, add=add, gate=gate, reuse_delta=reuse_delta,
    )  # fmt: skip


def scan_prepared(
    u: torch.Tensor,
    z: torch.Tensor | None,
    xdbl: torch.Tensor,
    weights: ScanWeights,
    length: int,
    chunk: int | None = None,
    npoly: int | None = None,
    out: torch.Tensor | None = None,
    unroll: int | None = None,
    tile: int | None = None,
    min_blocks: int | None = None,
    reverse: bool = False,
    add: torch.Tensor | None = None,
    gate: bool = True,
    reuse_delta: bool | None = None,
) -> torch.Tensor:
    """``selective_scan_tm`` with its weights prepared (``ScanWeights``).

    ``add`` (n*L, d): optional, may be ``out``. ``gate=False``: no silu(z) factor (z may be
    None; no ``add``). ``out`` may be ``u`` (y written over u). ``chunk``: positions per chunk (default from
    ``pick_chunk``). ``reverse``: each row is scanned from its last position to its first (all tensors
    in row order: ``flip_L(scan(flip_L(...)))``). ``reuse_delta``: the state pass writes delta (float32,
    4 * d bytes per token, freed on return) for every chunk and the full pass reads it instead of
    recomputing the dt projection and softplus (same values, bit for bit); default: when the row is cut
    into ``DELTA_MIN_CHUNKS`` chunks or more (the state pass then also runs the last chunk).
    """
    ntok, d = u.shape
    ns, rk = weights.A2.shape[1], weights.dt_weight.shape[1]
    n = ntok // length
    esz = u.element_size()
    z = z if gate else u  # not read without the gate
    assert z is not None, "gate=True needs z"
    assert gate or add is None, "add is only taken with the gate (the reverse pass of bimamba_rows)"
    assert ntok == n * length and u.is_contiguous() and z.stride(1) == 1 and xdbl.is_contiguous()
    assert xdbl.shape[1] == rk + 2 * ns and u.dtype == z.dtype == xdbl.dtype and supports(d, u.dtype)
    assert z.data_ptr() % 16 == 0 and (z.stride(0) * esz) % 16 == 0 and u.data_ptr() % 16 == 0
    assert add is None or (add.shape == u.shape and add.dtype == u.dtype and add.is_contiguous())
    assert add is None or add.data_ptr() % 16 == 0
    for t, shape in ((weights.dt_weight, (d, rk)), (weights.dt_bias, (d,)), (weights.A2, (d, ns)), (weights.D, (d,))):
        assert t.dtype == torch.float32 and t.is_contiguous() and t.shape == shape and t.device == u.device
    ch = _block_channels(d)
    tt = tile or (TT_BF16 if u.dtype == torch.bfloat16 else TT_F32)
    minb = min_blocks or (DEFAULT_MIN_BLOCKS if u.dtype == torch.bfloat16 else 1)
    npoly = min(ns, DEFAULT_NPOLY if npoly is None else npoly)
    tt = fit_tile(tt, esz, ch, ns, rk, gate, add is not None, False)  # the chunk is picked for this tile
    chunk = min(length, chunk or pick_chunk(n, d, length, tt, ch))
    K = cdiv(length, chunk)
    reuse = K >= DELTA_MIN_CHUNKS if reuse_delta is None else reuse_delta
    tt = fit_tile(tt, esz, ch, ns, rk, gate, add is not None, reuse)  # the delta tiles may halve it
    if chunk < length and chunk % tt:
        raise ValueError(f"chunk {chunk} is not a multiple of the tile {tt}")
    k = nvrtc_module(
        _SCAN_SOURCE,
        (
            ("IS_BF16", int(u.dtype == torch.bfloat16)),
            ("NS", ns),
            ("RK", rk),
            ("CH", ch),
            ("TT", tt),
            ("NPOLY", npoly),
            ("UNR", unroll or DEFAULT_UNROLL),
            ("MINB", minb),
            ("WITH_ADD", int(add is not None)),
            ("WITH_GATE", int(gate)),
            ("WITH_DELTA", int(reuse)),
            ("CW", COMBINE_WARPS),
        ),
        ("scan_full", "scan_state", "scan_combine"),
        device_index(u),
    )
    y = torch.empty_like(u) if out is None else out
    Wdt, dtb, A2, Dp = weights.dt_weight, weights.dt_bias, weights.A2, weights.D
    hbuf = Sbuf = delta = A2  # placeholders: not read
    if reuse:
        delta = torch.empty(ntok, d, device=u.device, dtype=torch.float32)
    if K > 1 or reuse:
        hbuf = torch.empty(n, K, d, ns, device=u.device, dtype=torch.float32)
        Sbuf = torch.empty(n, K, d, device=u.device, dtype=torch.float32)
        k["scan_state"](  # chunks 0..K-2 (their end states); all K when it writes delta
            grid=(d // ch, K if reuse else K - 1, n),
            block=(ch, 1, 1),
            args=[u, xdbl, Wdt, dtb, A2, hbuf, Sbuf, delta, length, d, chunk, K, int(reverse)],
        )
    if K > 1:
        k["scan_combine"](
            grid=(cdiv(n * d * ns, 32), 1, 1), block=(32 * COMBINE_WARPS, 1, 1), args=[hbuf, Sbuf, A2, n, d, K]
        )
    k["scan_full"](
        grid=(d // ch, K, n),
        block=(ch, 1, 1),
        args=[u, z, xdbl, y, y if add is None else add, Wdt, dtb, A2, Dp, hbuf, Sbuf, delta]
        + [length, d, chunk, K, z.stride(0), int(reverse)],
    )
    return y
