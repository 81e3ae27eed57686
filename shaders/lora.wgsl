// LoRA linear with a frozen base weight (nn/ref/lora.go):
//   forward:  u = x·Aᵀ (N, R);  y = x·Wᵀ + s·u·Bᵀ (N, Cout)
//   backward: du = s·dy·B;  dB += s·dyᵀ·u;  dA += duᵀ·x;  dx = dy·W + du·A
// built from three product kernels on row-major matrices:
//   nt: out (M, P) = alpha1·L1·Wᵀ + alpha2·L2·W2ᵀ    L1 (M, K1), W (P, K1), L2 (M, K2), W2 (P, K2)
//   nn: out (M, P) = alpha1·L1·W  + alpha2·L2·W2     L1 (M, K1), W (K1, P), L2 (M, K2), W2 (K2, P)
//   tn: out (M, P) += alpha1·L1ᵀ·W                   L1 (K1, M), W (K1, P)   (K1 = N rows)
// plus the growth-time merge W += s·B·A and a packer of f32 into half.
//
// Operands are read as quads (four consecutive elements of one row). Each
// operand has a scalar loader (any row length: clamped element loads, zero
// past the row's end) and a vector loader (row length a multiple of 4: one
// 16-byte load); the launcher picks one kind for the whole dispatch by
// template (V = s or v). The frozen weight W is f32 (WF = f) or half packed
// two per u32 word, low half first (WF = h). Each invocation of nt/nn owns
// a 4x4 output tile; nt8/nn8, used when every row length is a multiple of
// 4, own 8x8 tiles and use vector loads only. Rows outside the matrix are
// clamped for loading and never stored. Loops: nt/nn/nt8/nn8 run
// (k1-k0)/4 + r1/4 iterations and tn (k1-k0)/SPLIT, bounded by the
// launcher well below lavapipe's 65,535 (WEBGPU.md trap 2).

struct Params {
  M: u32,       // output rows
  P: u32,       // output columns
  K1: u32,      // first product's reduction length (row length of L1 in nt/nn)
  K2: u32,      // second product's reduction length (R; row length of L2)
  m0: u32,      // first output row of this band (first element for merge)
  m1: u32,      // end of the band, exclusive
  k0: u32,      // first-product reduction chunk [k0, k1), k0 a multiple of 4
  k1: u32,
  r1: u32,      // second product runs over [0, r1): K2, or 0 to skip it
  nwg_x: u32,   // workgroups along x of the folded grid
  accum: u32,   // 1: out += result; 0: out = result
  alpha1: f32,
  alpha2: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> hout: array<u32>;
@group(0) @binding(2) var<storage, read> l1s: array<f32>;
@group(0) @binding(2) var<storage, read> l1v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wfs: array<f32>;
@group(0) @binding(3) var<storage, read> wfv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> whs: array<u32>;
@group(0) @binding(3) var<storage, read> whv: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> l2s: array<f32>;
@group(0) @binding(4) var<storage, read> l2v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> w2s: array<f32>;
@group(0) @binding(5) var<storage, read> w2v: array<vec4<f32>>;

// Quad loaders: elements [col, col+4) of row `row` of a matrix whose rows
// have n elements. The _s forms zero the elements at or past n; the _v forms
// need n and col to be multiples of 4.
fn ld_l1_s(row: u32, col: u32, n: u32) -> vec4<f32> {
  let i = row * n;
  let e = n - 1u;
  let q = vec4<f32>(l1s[i + min(col, e)], l1s[i + min(col + 1u, e)],
                    l1s[i + min(col + 2u, e)], l1s[i + min(col + 3u, e)]);
  return select(vec4<f32>(0.0), q, col + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}
fn ld_l1_v(row: u32, col: u32, n: u32) -> vec4<f32> { return l1v[(row * n + col) >> 2u]; }

fn ld_l2_s(row: u32, col: u32, n: u32) -> vec4<f32> {
  let i = row * n;
  let e = n - 1u;
  let q = vec4<f32>(l2s[i + min(col, e)], l2s[i + min(col + 1u, e)],
                    l2s[i + min(col + 2u, e)], l2s[i + min(col + 3u, e)]);
  return select(vec4<f32>(0.0), q, col + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}
fn ld_l2_v(row: u32, col: u32, n: u32) -> vec4<f32> { return l2v[(row * n + col) >> 2u]; }

fn ld_w2_s(row: u32, col: u32, n: u32) -> vec4<f32> {
  let i = row * n;
  let e = n - 1u;
  let q = vec4<f32>(w2s[i + min(col, e)], w2s[i + min(col + 1u, e)],
                    w2s[i + min(col + 2u, e)], w2s[i + min(col + 3u, e)]);
  return select(vec4<f32>(0.0), q, col + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}
fn ld_w2_v(row: u32, col: u32, n: u32) -> vec4<f32> { return w2v[(row * n + col) >> 2u]; }

fn ld_w_fs(row: u32, col: u32, n: u32) -> vec4<f32> {
  let i = row * n;
  let e = n - 1u;
  let q = vec4<f32>(wfs[i + min(col, e)], wfs[i + min(col + 1u, e)],
                    wfs[i + min(col + 2u, e)], wfs[i + min(col + 3u, e)]);
  return select(vec4<f32>(0.0), q, col + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}
fn ld_w_fv(row: u32, col: u32, n: u32) -> vec4<f32> { return wfv[(row * n + col) >> 2u]; }

// half_at returns element e of the packed half weight: half e%2 of word e/2.
fn half_at(e: u32) -> f32 {
  let h = unpack2x16float(whs[e >> 1u]);
  return select(h.x, h.y, (e & 1u) == 1u);
}
fn ld_w_hs(row: u32, col: u32, n: u32) -> vec4<f32> {
  let i = row * n;
  let e = n - 1u;
  let q = vec4<f32>(half_at(i + min(col, e)), half_at(i + min(col + 1u, e)), half_at(i + min(col + 2u, e)),
                    half_at(i + min(col + 3u, e)));
  return select(vec4<f32>(0.0), q, col + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}
// Four halves starting at a multiple of 4 are one aligned vec2<u32>.
fn ld_w_hv(row: u32, col: u32, n: u32) -> vec4<f32> {
  let w = whv[(row * n + col) >> 2u];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

// put stores one result of the band, respecting p.accum.
fn put(row: u32, col: u32, v: f32) {
  if (row < p.m1 && col < p.P) {
    let i = row * p.P + col;
    if (p.accum == 1u) {
      out[i] = out[i] + v;
    } else {
      out[i] = v;
    }
  }
}

fn put4(row: u32, col: u32, v: vec4<f32>) {
  put(row, col, v.x);
  put(row, col + 1u, v.y);
  put(row, col + 2u, v.z);
  put(row, col + 3u, v.w);
}

// tile returns the output tile of an nt/nn invocation: its first row and
// column, or row >= m1 when the invocation is past the band.
fn tile(wid: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
  let t = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  let tilesP = (p.P + 3u) / 4u;
  return vec2<u32>(p.m0 + 4u * (t / tilesP), 4u * (t % tilesP));
}

// nt: out[m, c] = alpha1·sum_k L1[m, k]·W[c, k] + alpha2·sum_r L2[m, r]·W2[c, r]
// (forward: y = x·Wᵀ + s·u·Bᵀ, and u = x·Aᵀ with no second product).
@compute @workgroup_size({{WG}})
fn nt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let mc = tile(wid, lid);
  let m = mc.x;
  let c = mc.y;
  if (m >= p.m1) {
    return;
  }
  let last = p.M - 1u;
  let a0 = m;
  let a1 = min(m + 1u, last);
  let a2 = min(m + 2u, last);
  let a3 = min(m + 3u, last);
  let lastc = p.P - 1u;
  let b0 = c;
  let b1 = min(c + 1u, lastc);
  let b2 = min(c + 2u, lastc);
  let b3 = min(c + 3u, lastc);
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  for (var k = p.k0; k < p.k1; k += 4u) {
    let x0 = ld_l1_{{V}}(a0, k, p.K1);
    let x1 = ld_l1_{{V}}(a1, k, p.K1);
    let x2 = ld_l1_{{V}}(a2, k, p.K1);
    let x3 = ld_l1_{{V}}(a3, k, p.K1);
    let w0 = ld_w_{{WF}}{{V}}(b0, k, p.K1);
    let w1 = ld_w_{{WF}}{{V}}(b1, k, p.K1);
    let w2 = ld_w_{{WF}}{{V}}(b2, k, p.K1);
    let w3 = ld_w_{{WF}}{{V}}(b3, k, p.K1);
    s0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    s1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    s2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    s3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
  }
  var t0 = vec4<f32>(0.0);
  var t1 = vec4<f32>(0.0);
  var t2 = vec4<f32>(0.0);
  var t3 = vec4<f32>(0.0);
  for (var r = 0u; r < p.r1; r += 4u) {
    let x0 = ld_l2_{{V}}(a0, r, p.K2);
    let x1 = ld_l2_{{V}}(a1, r, p.K2);
    let x2 = ld_l2_{{V}}(a2, r, p.K2);
    let x3 = ld_l2_{{V}}(a3, r, p.K2);
    let w0 = ld_w2_{{V}}(b0, r, p.K2);
    let w1 = ld_w2_{{V}}(b1, r, p.K2);
    let w2 = ld_w2_{{V}}(b2, r, p.K2);
    let w3 = ld_w2_{{V}}(b3, r, p.K2);
    t0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    t1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    t2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    t3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
  }
  put4(m, c, p.alpha1 * s0 + p.alpha2 * t0);
  put4(m + 1u, c, p.alpha1 * s1 + p.alpha2 * t1);
  put4(m + 2u, c, p.alpha1 * s2 + p.alpha2 * t2);
  put4(m + 3u, c, p.alpha1 * s3 + p.alpha2 * t3);
}

// nn: out[m, c] = alpha1·sum_k L1[m, k]·W[k, c] + alpha2·sum_r L2[m, r]·W2[r, c]
// (backward: dx = dy·W + du·A, and du = s·dy·B with no second product).
// Reduction rows past the end are clamped for loading and zeroed.
@compute @workgroup_size({{WG}})
fn nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let mc = tile(wid, lid);
  let m = mc.x;
  let c = mc.y;
  if (m >= p.m1) {
    return;
  }
  let last = p.M - 1u;
  let a0 = m;
  let a1 = min(m + 1u, last);
  let a2 = min(m + 2u, last);
  let a3 = min(m + 3u, last);
  let zero = vec4<f32>(0.0);
  var s0 = zero;
  var s1 = zero;
  var s2 = zero;
  var s3 = zero;
  let lastk = p.K1 - 1u;
  for (var k = p.k0; k < p.k1; k += 4u) {
    let x0 = ld_l1_{{V}}(a0, k, p.K1);
    let x1 = ld_l1_{{V}}(a1, k, p.K1);
    let x2 = ld_l1_{{V}}(a2, k, p.K1);
    let x3 = ld_l1_{{V}}(a3, k, p.K1);
    let w0 = ld_w_{{WF}}{{V}}(k, c, p.P);
    let w1 = select(zero, ld_w_{{WF}}{{V}}(min(k + 1u, lastk), c, p.P), k + 1u < p.K1);
    let w2 = select(zero, ld_w_{{WF}}{{V}}(min(k + 2u, lastk), c, p.P), k + 2u < p.K1);
    let w3 = select(zero, ld_w_{{WF}}{{V}}(min(k + 3u, lastk), c, p.P), k + 3u < p.K1);
    s0 += x0.x * w0 + x0.y * w1 + x0.z * w2 + x0.w * w3;
    s1 += x1.x * w0 + x1.y * w1 + x1.z * w2 + x1.w * w3;
    s2 += x2.x * w0 + x2.y * w1 + x2.z * w2 + x2.w * w3;
    s3 += x3.x * w0 + x3.y * w1 + x3.z * w2 + x3.w * w3;
  }
  var t0 = zero;
  var t1 = zero;
  var t2 = zero;
  var t3 = zero;
  let lastr = max(p.K2, 1u) - 1u;
  for (var r = 0u; r < p.r1; r += 4u) {
    let x0 = ld_l2_{{V}}(a0, r, p.K2);
    let x1 = ld_l2_{{V}}(a1, r, p.K2);
    let x2 = ld_l2_{{V}}(a2, r, p.K2);
    let x3 = ld_l2_{{V}}(a3, r, p.K2);
    let w0 = ld_w2_{{V}}(r, c, p.P);
    let w1 = select(zero, ld_w2_{{V}}(min(r + 1u, lastr), c, p.P), r + 1u < p.K2);
    let w2 = select(zero, ld_w2_{{V}}(min(r + 2u, lastr), c, p.P), r + 2u < p.K2);
    let w3 = select(zero, ld_w2_{{V}}(min(r + 3u, lastr), c, p.P), r + 3u < p.K2);
    t0 += x0.x * w0 + x0.y * w1 + x0.z * w2 + x0.w * w3;
    t1 += x1.x * w0 + x1.y * w1 + x1.z * w2 + x1.w * w3;
    t2 += x2.x * w0 + x2.y * w1 + x2.z * w2 + x2.w * w3;
    t3 += x3.x * w0 + x3.y * w1 + x3.z * w2 + x3.w * w3;
  }
  put4(m, c, p.alpha1 * s0 + p.alpha2 * t0);
  put4(m + 1u, c, p.alpha1 * s1 + p.alpha2 * t1);
  put4(m + 2u, c, p.alpha1 * s2 + p.alpha2 * t2);
  put4(m + 3u, c, p.alpha1 * s3 + p.alpha2 * t3);
}

// nt8: nt with 8x8 tiles and vector loaders only (every row length a
// multiple of 4): twice the loads of nt per quad step for four times the
// multiply-adds, the faster form for the usual shapes. Pinned to nt by
// TestLoRAScalarLoaders.
@compute @workgroup_size({{WG}})
fn nt8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  let tilesP = (p.P + 7u) / 8u;
  let m = p.m0 + 8u * (t / tilesP);
  let c = 8u * (t % tilesP);
  if (m >= p.m1) {
    return;
  }
  let last = p.M - 1u;
  let lastc = p.P - 1u;
  let a0 = min(m + 0u, last); let a1 = min(m + 1u, last); let a2 = min(m + 2u, last); let a3 = min(m + 3u, last);
  let a4 = min(m + 4u, last); let a5 = min(m + 5u, last); let a6 = min(m + 6u, last); let a7 = min(m + 7u, last);
  let b0 = min(c + 0u, lastc); let b1 = min(c + 1u, lastc); let b2 = min(c + 2u, lastc); let b3 = min(c + 3u, lastc);
  let b4 = min(c + 4u, lastc); let b5 = min(c + 5u, lastc); let b6 = min(c + 6u, lastc); let b7 = min(c + 7u, lastc);
  var s0l = vec4<f32>(0.0); var s0h = vec4<f32>(0.0); var s1l = vec4<f32>(0.0); var s1h = vec4<f32>(0.0);
  var s2l = vec4<f32>(0.0); var s2h = vec4<f32>(0.0); var s3l = vec4<f32>(0.0); var s3h = vec4<f32>(0.0);
  var s4l = vec4<f32>(0.0); var s4h = vec4<f32>(0.0); var s5l = vec4<f32>(0.0); var s5h = vec4<f32>(0.0);
  var s6l = vec4<f32>(0.0); var s6h = vec4<f32>(0.0); var s7l = vec4<f32>(0.0); var s7h = vec4<f32>(0.0);
  for (var k = p.k0; k < p.k1; k += 4u) {
    let w0 = ld_w_{{WF}}v(b0, k, p.K1);
    let w1 = ld_w_{{WF}}v(b1, k, p.K1);
    let w2 = ld_w_{{WF}}v(b2, k, p.K1);
    let w3 = ld_w_{{WF}}v(b3, k, p.K1);
    let w4 = ld_w_{{WF}}v(b4, k, p.K1);
    let w5 = ld_w_{{WF}}v(b5, k, p.K1);
    let w6 = ld_w_{{WF}}v(b6, k, p.K1);
    let w7 = ld_w_{{WF}}v(b7, k, p.K1);
    let x0 = ld_l1_v(a0, k, p.K1);
    s0l += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    s0h += vec4<f32>(dot(x0, w4), dot(x0, w5), dot(x0, w6), dot(x0, w7));
    let x1 = ld_l1_v(a1, k, p.K1);
    s1l += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    s1h += vec4<f32>(dot(x1, w4), dot(x1, w5), dot(x1, w6), dot(x1, w7));
    let x2 = ld_l1_v(a2, k, p.K1);
    s2l += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    s2h += vec4<f32>(dot(x2, w4), dot(x2, w5), dot(x2, w6), dot(x2, w7));
    let x3 = ld_l1_v(a3, k, p.K1);
    s3l += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    s3h += vec4<f32>(dot(x3, w4), dot(x3, w5), dot(x3, w6), dot(x3, w7));
    let x4 = ld_l1_v(a4, k, p.K1);
    s4l += vec4<f32>(dot(x4, w0), dot(x4, w1), dot(x4, w2), dot(x4, w3));
    s4h += vec4<f32>(dot(x4, w4), dot(x4, w5), dot(x4, w6), dot(x4, w7));
    let x5 = ld_l1_v(a5, k, p.K1);
    s5l += vec4<f32>(dot(x5, w0), dot(x5, w1), dot(x5, w2), dot(x5, w3));
    s5h += vec4<f32>(dot(x5, w4), dot(x5, w5), dot(x5, w6), dot(x5, w7));
    let x6 = ld_l1_v(a6, k, p.K1);
    s6l += vec4<f32>(dot(x6, w0), dot(x6, w1), dot(x6, w2), dot(x6, w3));
    s6h += vec4<f32>(dot(x6, w4), dot(x6, w5), dot(x6, w6), dot(x6, w7));
    let x7 = ld_l1_v(a7, k, p.K1);
    s7l += vec4<f32>(dot(x7, w0), dot(x7, w1), dot(x7, w2), dot(x7, w3));
    s7h += vec4<f32>(dot(x7, w4), dot(x7, w5), dot(x7, w6), dot(x7, w7));
  }
  s0l *= p.alpha1; s0h *= p.alpha1; s1l *= p.alpha1; s1h *= p.alpha1;
  s2l *= p.alpha1; s2h *= p.alpha1; s3l *= p.alpha1; s3h *= p.alpha1;
  s4l *= p.alpha1; s4h *= p.alpha1; s5l *= p.alpha1; s5h *= p.alpha1;
  s6l *= p.alpha1; s6h *= p.alpha1; s7l *= p.alpha1; s7h *= p.alpha1;
  for (var r = 0u; r < p.r1; r += 4u) {
    let w0 = p.alpha2 * ld_w2_v(b0, r, p.K2);
    let w1 = p.alpha2 * ld_w2_v(b1, r, p.K2);
    let w2 = p.alpha2 * ld_w2_v(b2, r, p.K2);
    let w3 = p.alpha2 * ld_w2_v(b3, r, p.K2);
    let w4 = p.alpha2 * ld_w2_v(b4, r, p.K2);
    let w5 = p.alpha2 * ld_w2_v(b5, r, p.K2);
    let w6 = p.alpha2 * ld_w2_v(b6, r, p.K2);
    let w7 = p.alpha2 * ld_w2_v(b7, r, p.K2);
    let x0 = ld_l2_v(a0, r, p.K2);
    s0l += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    s0h += vec4<f32>(dot(x0, w4), dot(x0, w5), dot(x0, w6), dot(x0, w7));
    let x1 = ld_l2_v(a1, r, p.K2);
    s1l += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    s1h += vec4<f32>(dot(x1, w4), dot(x1, w5), dot(x1, w6), dot(x1, w7));
    let x2 = ld_l2_v(a2, r, p.K2);
    s2l += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    s2h += vec4<f32>(dot(x2, w4), dot(x2, w5), dot(x2, w6), dot(x2, w7));
    let x3 = ld_l2_v(a3, r, p.K2);
    s3l += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    s3h += vec4<f32>(dot(x3, w4), dot(x3, w5), dot(x3, w6), dot(x3, w7));
    let x4 = ld_l2_v(a4, r, p.K2);
    s4l += vec4<f32>(dot(x4, w0), dot(x4, w1), dot(x4, w2), dot(x4, w3));
    s4h += vec4<f32>(dot(x4, w4), dot(x4, w5), dot(x4, w6), dot(x4, w7));
    let x5 = ld_l2_v(a5, r, p.K2);
    s5l += vec4<f32>(dot(x5, w0), dot(x5, w1), dot(x5, w2), dot(x5, w3));
    s5h += vec4<f32>(dot(x5, w4), dot(x5, w5), dot(x5, w6), dot(x5, w7));
    let x6 = ld_l2_v(a6, r, p.K2);
    s6l += vec4<f32>(dot(x6, w0), dot(x6, w1), dot(x6, w2), dot(x6, w3));
    s6h += vec4<f32>(dot(x6, w4), dot(x6, w5), dot(x6, w6), dot(x6, w7));
    let x7 = ld_l2_v(a7, r, p.K2);
    s7l += vec4<f32>(dot(x7, w0), dot(x7, w1), dot(x7, w2), dot(x7, w3));
    s7h += vec4<f32>(dot(x7, w4), dot(x7, w5), dot(x7, w6), dot(x7, w7));
  }
  put4(m + 0u, c, s0l); put4(m + 0u, c + 4u, s0h);
  put4(m + 1u, c, s1l); put4(m + 1u, c + 4u, s1h);
  put4(m + 2u, c, s2l); put4(m + 2u, c + 4u, s2h);
  put4(m + 3u, c, s3l); put4(m + 3u, c + 4u, s3h);
  put4(m + 4u, c, s4l); put4(m + 4u, c + 4u, s4h);
  put4(m + 5u, c, s5l); put4(m + 5u, c + 4u, s5h);
  put4(m + 6u, c, s6l); put4(m + 6u, c + 4u, s6h);
  put4(m + 7u, c, s7l); put4(m + 7u, c + 4u, s7h);
}

// nn8: nn with 8x8 tiles and vector loaders only, like nt8. The second
// column quad is clamped to the last valid quad when P is not a multiple
// of 8 (loaded, never stored).
@compute @workgroup_size({{WG}})
fn nn8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  let tilesP = (p.P + 7u) / 8u;
  let m = p.m0 + 8u * (t / tilesP);
  let c = 8u * (t % tilesP);
  if (m >= p.m1) {
    return;
  }
  let last = p.M - 1u;
  let ch = min(c + 4u, p.P - 4u);
  let zero = vec4<f32>(0.0);
  let a0 = min(m + 0u, last); let a1 = min(m + 1u, last); let a2 = min(m + 2u, last); let a3 = min(m + 3u, last);
  let a4 = min(m + 4u, last); let a5 = min(m + 5u, last); let a6 = min(m + 6u, last); let a7 = min(m + 7u, last);
  var s0l = zero; var s0h = zero; var s1l = zero; var s1h = zero;
  var s2l = zero; var s2h = zero; var s3l = zero; var s3h = zero;
  var s4l = zero; var s4h = zero; var s5l = zero; var s5h = zero;
  var s6l = zero; var s6h = zero; var s7l = zero; var s7h = zero;
  for (var k = p.k0; k < p.k1; k += 4u) {
    let w0l = ld_w_{{WF}}v(k + 0u, c, p.P);
    let w0h = ld_w_{{WF}}v(k + 0u, ch, p.P);
    let w1l = ld_w_{{WF}}v(k + 1u, c, p.P);
    let w1h = ld_w_{{WF}}v(k + 1u, ch, p.P);
    let w2l = ld_w_{{WF}}v(k + 2u, c, p.P);
    let w2h = ld_w_{{WF}}v(k + 2u, ch, p.P);
    let w3l = ld_w_{{WF}}v(k + 3u, c, p.P);
    let w3h = ld_w_{{WF}}v(k + 3u, ch, p.P);
    let x0 = ld_l1_v(a0, k, p.K1);
    s0l += x0.x * w0l + x0.y * w1l + x0.z * w2l + x0.w * w3l;
    s0h += x0.x * w0h + x0.y * w1h + x0.z * w2h + x0.w * w3h;
    let x1 = ld_l1_v(a1, k, p.K1);
    s1l += x1.x * w0l + x1.y * w1l + x1.z * w2l + x1.w * w3l;
    s1h += x1.x * w0h + x1.y * w1h + x1.z * w2h + x1.w * w3h;
    let x2 = ld_l1_v(a2, k, p.K1);
    s2l += x2.x * w0l + x2.y * w1l + x2.z * w2l + x2.w * w3l;
    s2h += x2.x * w0h + x2.y * w1h + x2.z * w2h + x2.w * w3h;
    let x3 = ld_l1_v(a3, k, p.K1);
    s3l += x3.x * w0l + x3.y * w1l + x3.z * w2l + x3.w * w3l;
    s3h += x3.x * w0h + x3.y * w1h + x3.z * w2h + x3.w * w3h;
    let x4 = ld_l1_v(a4, k, p.K1);
    s4l += x4.x * w0l + x4.y * w1l + x4.z * w2l + x4.w * w3l;
    s4h += x4.x * w0h + x4.y * w1h + x4.z * w2h + x4.w * w3h;
    let x5 = ld_l1_v(a5, k, p.K1);
    s5l += x5.x * w0l + x5.y * w1l + x5.z * w2l + x5.w * w3l;
    s5h += x5.x * w0h + x5.y * w1h + x5.z * w2h + x5.w * w3h;
    let x6 = ld_l1_v(a6, k, p.K1);
    s6l += x6.x * w0l + x6.y * w1l + x6.z * w2l + x6.w * w3l;
    s6h += x6.x * w0h + x6.y * w1h + x6.z * w2h + x6.w * w3h;
    let x7 = ld_l1_v(a7, k, p.K1);
    s7l += x7.x * w0l + x7.y * w1l + x7.z * w2l + x7.w * w3l;
    s7h += x7.x * w0h + x7.y * w1h + x7.z * w2h + x7.w * w3h;
  }
  s0l *= p.alpha1; s0h *= p.alpha1; s1l *= p.alpha1; s1h *= p.alpha1;
  s2l *= p.alpha1; s2h *= p.alpha1; s3l *= p.alpha1; s3h *= p.alpha1;
  s4l *= p.alpha1; s4h *= p.alpha1; s5l *= p.alpha1; s5h *= p.alpha1;
  s6l *= p.alpha1; s6h *= p.alpha1; s7l *= p.alpha1; s7h *= p.alpha1;
  for (var r = 0u; r < p.r1; r += 4u) {
    let w0l = p.alpha2 * ld_w2_v(r + 0u, c, p.P);
    let w0h = p.alpha2 * ld_w2_v(r + 0u, ch, p.P);
    let w1l = p.alpha2 * ld_w2_v(r + 1u, c, p.P);
    let w1h = p.alpha2 * ld_w2_v(r + 1u, ch, p.P);
    let w2l = p.alpha2 * ld_w2_v(r + 2u, c, p.P);
    let w2h = p.alpha2 * ld_w2_v(r + 2u, ch, p.P);
    let w3l = p.alpha2 * ld_w2_v(r + 3u, c, p.P);
    let w3h = p.alpha2 * ld_w2_v(r + 3u, ch, p.P);
    let x0 = ld_l2_v(a0, r, p.K2);
    s0l += x0.x * w0l + x0.y * w1l + x0.z * w2l + x0.w * w3l;
    s0h += x0.x * w0h + x0.y * w1h + x0.z * w2h + x0.w * w3h;
    let x1 = ld_l2_v(a1, r, p.K2);
    s1l += x1.x * w0l + x1.y * w1l + x1.z * w2l + x1.w * w3l;
    s1h += x1.x * w0h + x1.y * w1h + x1.z * w2h + x1.w * w3h;
    let x2 = ld_l2_v(a2, r, p.K2);
    s2l += x2.x * w0l + x2.y * w1l + x2.z * w2l + x2.w * w3l;
    s2h += x2.x * w0h + x2.y * w1h + x2.z * w2h + x2.w * w3h;
    let x3 = ld_l2_v(a3, r, p.K2);
    s3l += x3.x * w0l + x3.y * w1l + x3.z * w2l + x3.w * w3l;
    s3h += x3.x * w0h + x3.y * w1h + x3.z * w2h + x3.w * w3h;
    let x4 = ld_l2_v(a4, r, p.K2);
    s4l += x4.x * w0l + x4.y * w1l + x4.z * w2l + x4.w * w3l;
    s4h += x4.x * w0h + x4.y * w1h + x4.z * w2h + x4.w * w3h;
    let x5 = ld_l2_v(a5, r, p.K2);
    s5l += x5.x * w0l + x5.y * w1l + x5.z * w2l + x5.w * w3l;
    s5h += x5.x * w0h + x5.y * w1h + x5.z * w2h + x5.w * w3h;
    let x6 = ld_l2_v(a6, r, p.K2);
    s6l += x6.x * w0l + x6.y * w1l + x6.z * w2l + x6.w * w3l;
    s6h += x6.x * w0h + x6.y * w1h + x6.z * w2h + x6.w * w3h;
    let x7 = ld_l2_v(a7, r, p.K2);
    s7l += x7.x * w0l + x7.y * w1l + x7.z * w2l + x7.w * w3l;
    s7h += x7.x * w0h + x7.y * w1h + x7.z * w2h + x7.w * w3h;
  }
  put4(m + 0u, c, s0l); put4(m + 0u, c + 4u, s0h);
  put4(m + 1u, c, s1l); put4(m + 1u, c + 4u, s1h);
  put4(m + 2u, c, s2l); put4(m + 2u, c + 4u, s2h);
  put4(m + 3u, c, s3l); put4(m + 3u, c + 4u, s3h);
  put4(m + 4u, c, s4l); put4(m + 4u, c + 4u, s4h);
  put4(m + 5u, c, s5l); put4(m + 5u, c + 4u, s5h);
  put4(m + 6u, c, s6l); put4(m + 6u, c + 4u, s6h);
  put4(m + 7u, c, s7l); put4(m + 7u, c + 4u, s7h);
}

// tn partial sums: SPLIT invocations share one 4x4 tile, each summing every
// SPLIT-th row of the chunk, then a tree reduction in workgroup memory.
var<workgroup> red: array<vec4<f32>, {{TNRED}}>; // TNWG x 4 quads

// tn: out[m, c] += alpha1·sum_{n in [k0, k1)} L1[n, m]·W[n, c]
// (dB += s·dyᵀ·u and dA += duᵀ·x). A workgroup is TILES tiles x SPLIT.
@compute @workgroup_size({{TNWG}})
fn tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x % {{SPLIT}}u;
  let t = (wid.y * p.nwg_x + wid.x) * ({{TNWG}}u / {{SPLIT}}u) + lid.x / {{SPLIT}}u;
  let tilesP = (p.P + 3u) / 4u;
  let m = 4u * (t / tilesP);
  let c = 4u * (t % tilesP);
  // Tiles past the end still join the barriers; they load a valid quad.
  let ml = min(m, (p.M - 1u) & ~3u);
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  for (var n = p.k0 + lane; n < p.k1; n += {{SPLIT}}u) {
    let l = ld_l1_{{V}}(n, ml, p.M);
    let w = ld_w_f{{V}}(n, c, p.P);
    s0 += l.x * w;
    s1 += l.y * w;
    s2 += l.z * w;
    s3 += l.w * w;
  }
  let base = lid.x * 4u;
  red[base] = s0;
  red[base + 1u] = s1;
  red[base + 2u] = s2;
  red[base + 3u] = s3;
  workgroupBarrier();
  for (var stride = {{SPLIT}}u / 2u; stride > 0u; stride = stride / 2u) {
    if (lane < stride) {
      let o = base + stride * 4u;
      red[base] += red[o];
      red[base + 1u] += red[o + 1u];
      red[base + 2u] += red[o + 2u];
      red[base + 3u] += red[o + 3u];
    }
    workgroupBarrier();
  }
  if (lane == 0u && m < p.M) {
    put4(m, c, p.alpha1 * red[base]);
    put4(m + 1u, c, p.alpha1 * red[base + 1u]);
    put4(m + 2u, c, p.alpha1 * red[base + 2u]);
    put4(m + 3u, c, p.alpha1 * red[base + 3u]);
  }
}

// merge_dot returns sum_r B[o, r]·A[r, i] with B (M, K1) in l1s and A (K1, P)
// in wfs: one element of B·A.
fn merge_dot(e: u32) -> f32 {
  let o = e / p.P;
  let i = e % p.P;
  var s = 0.0;
  for (var r = 0u; r < p.K1; r++) {
    s += l1s[o * p.K1 + r] * wfs[r * p.P + i];
  }
  return s;
}

// merge_f32: W[e] += alpha1·(B·A)[e] for the elements e in [m0, m1).
@compute @workgroup_size({{WG}})
fn merge_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = p.m0 + (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  if (e < p.m1) {
    out[e] = out[e] + p.alpha1 * merge_dot(e);
  }
}

// half_pack clamps to the largest finite half (65504) before packing, since
// pack2x16float of a value outside the half range is indeterminate in WGSL.
fn half_pack(v: vec2<f32>) -> u32 {
  return pack2x16float(clamp(v, vec2<f32>(-65504.0), vec2<f32>(65504.0)));
}

// merge_half: the same on a packed half W, one invocation per word
// (elements 2w and 2w+1, words in [m0, m1)): unpack, add, repack. M·P is
// the element count; the high half of a last odd word stays as it was.
@compute @workgroup_size({{WG}})
fn merge_half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = p.m0 + (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  if (w >= p.m1) {
    return;
  }
  let n = p.M * p.P;
  var h = unpack2x16float(hout[w]);
  h.x = h.x + p.alpha1 * merge_dot(2u * w);
  if (2u * w + 1u < n) {
    h.y = h.y + p.alpha1 * merge_dot(2u * w + 1u);
  }
  hout[w] = half_pack(h);
}

// pack_half: word w of the half buffer = f32 elements 2w and 2w+1 of l1s
// (the high half is 0 past the M elements).
@compute @workgroup_size({{WG}})
fn pack_half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  if (2u * w >= p.M) {
    return;
  }
  var v = vec2<f32>(l1s[2u * w], 0.0);
  if (2u * w + 1u < p.M) {
    v.y = l1s[2u * w + 1u];
  }
  hout[w] = half_pack(v);
}

@group(0) @binding(2) var<storage, read> hin: array<u32>;

// unpack_half widens p.M half values, packed two per word in hin (low half
// first), into out: the frozen weight's float32 copy that the fast matmul
// reads. Exact: every half is a float32.
@compute @workgroup_size({{WG}})
fn unpack_half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  if (2u * w >= p.M) {
    return;
  }
  let v = unpack2x16float(hin[w]);
  out[2u * w] = v.x;
  if (2u * w + 1u < p.M) {
    out[2u * w + 1u] = v.y;
  }
}
