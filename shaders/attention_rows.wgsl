// Causal multi-head attention, register-only variant for CPU adapters.
//
// Same contract as attention.wgsl (q, k, v, out and gradients (B, T, C) with
// C = NH*HS, head h in columns h*HS .. h*HS+HS-1; lse (B, NH, T)), but no
// workgroup memory and no barriers: on lavapipe every storage or workgroup
// load is a per-lane loop with bounds checks and a barrier is costly. Here
// one invocation owns a block of 4 rows (queries, or keys for backward_kv)
// of one (batch, head) pair and one chunk of CH vec4 columns of its outputs,
// walks the rows on the other side of the causal mask 4 at a time, and keeps
// its accumulators in registers: each loaded vec4 feeds 4 dot products or
// 4 FMAs.
//
// The inputs are read through load functions the Go owner generates (see
// the inputs section below): from storage buffers, or from read-only storage
// textures, whose loads cost about a quarter of a buffer's on lavapipe; the
// variant's inner loops are load-bound there, so the texture kernels ran
// forward+backward 2.0-2.8x faster (attention_rows.go).
//
// Accumulators are private arrays indexed only inside loops of constant trip
// count CH, which the compiler unrolls into registers; dynamic indexing of a
// private array makes lavapipe's compile time explode, and live vec4s cost
// compile time too (CH = 16, 64 accumulators, compiles in a few seconds), so
// the full-HS dot products stream both sides from storage in loops over HS4
// that stay loops. Chunks of the same block recompute the scores: HS4/CH
// times, once for HS <= 4*CH.
//
// Work item i of a dispatch is block blk0 + i / nbh of virtual pair
// vbh = bh0 + i % nbh, vbh = (batch*NH + head)*NC + chunk: the 8 invocations
// of a workgroup (one SIMD vector on lavapipe) hold the same block, so their
// causal loops have (nearly) equal lengths. One invocation runs at most
// ceil(T/4) * (2*HS4 + CH + 1) + 2*HS4 loop trips (counting the CH loops,
// which unroll); the Go launcher uses this variant only where that stays
// far below lavapipe's 65,535-trip limit (WEBGPU.md trap 2).

struct Params {
  T: u32,
  NH: u32,
  bh0: u32,    // first virtual pair of this dispatch
  nbh: u32,    // virtual pairs in this dispatch
  blk0: u32,   // first block of 4 rows of this dispatch
  nblk: u32,   // blocks per pair in this dispatch
  nwg_x: u32,  // workgroups along x of the folded grid
  scale: f32,  // 1/sqrt(HS)
  HS4: u32,    // HS / 4
  NC: u32,     // column chunks per head, ceil(HS4 / CH)
  _pad0: u32,
  _pad1: u32,
}

// NEG marks a masked score: finite, and exp(NEG - m) is 0 for any real m.
const NEG: f32 = -3.0e38;
// CH is the vec4 columns of one chunk; RN the size of a 4-row accumulator.
const CH: u32 = {{CH}}u;
const RN: u32 = 4u * CH;
const WG: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
// forward
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
// backward_q / backward_kv (share binding numbers with the forward's outputs)
@group(0) @binding(1) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> lse_in: array<f32>;
// Inputs q (3), k (4), v (5) and dout (6), with their loads ld_q .. ld_dout
// (h, c): element c of the vec4 columns of the head hx .. hx+HS4-1 of row
// handle h (rows4). Bound as storage buffers, or as read-only storage
// textures holding (B*T) x (C/4) texels, whose loads cost a quarter of a
// buffer's on lavapipe (docs/PLATFORM.md); the Go owner generates one or
// the other. At most four textures per kernel, WebGPU's minimum limit.
{{INPUTS}}
// out (7), read by backward_q and row_stats once per row for D: always a
// buffer (a fifth texture would pass that limit, and it is read little).
@group(0) @binding(7) var<storage, read> o_in: array<vec4<f32>>;

fn ld_o(h: u32, c: u32) -> vec4<f32> {
  return o_in[flat(h) + c];
}
// row_stats writes D (flat (B, NH, T)) through binding 1; backward_kv reads
// it through binding 7.
@group(0) @binding(1) var<storage, read_write> dstat: array<f32>;
@group(0) @binding(7) var<storage, read> d_in: array<f32>;
// backward_kv writes dv through binding 8.
@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;

// Item is one invocation's work: pair bh, column chunk cc, block blk (rows
// 4*blk .. 4*blk+3).
struct Item {
  ok: bool,
  bh: u32,
  cc: u32,
  blk: u32,
}

fn item(wid: vec3<u32>, li: u32) -> Item {
  let i = (wid.y * p.nwg_x + wid.x) * WG + li;
  let vbh = p.bh0 + i % p.nbh;
  return Item(i < p.nbh * p.nblk, vbh / p.NC, vbh % p.NC, p.blk0 + i / p.nbh);
}

// hx is the first vec4 column of the invocation's head, (bh % NH) * HS4;
// every entry point sets it (setHead) before it computes a row handle.
var<private> hx: u32;

fn setHead(bh: u32) {
  hx = (bh % p.NH) * p.HS4;
}

// rows4 returns the row handles of pair bh's rows t0 .. t0+3, each clamped
// to T-1 so that a row past the end reads a valid row (whose results are
// masked or not stored). A handle is what the loads take: with buffers the
// vec4 index of the head's element 0 in the row, with textures the row.
fn rows4(bh: u32, t0: u32) -> vec4<u32> {
  let t = min(vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u), vec4<u32>(p.T - 1u));
  let y = vec4<u32>((bh / p.NH) * p.T) + t;
  {{ROWS}}
}

// flat returns the vec4 index of the head's element 0 in the row of handle
// h, where the outputs (always buffers) are stored.
fn flat(h: u32) -> u32 {
  {{FLAT}}
}

// col returns column x of chunk cc, clamped to HS4-1 so that the columns of
// a partial last chunk read valid data (and are not stored).
fn col(cc: u32, x: u32) -> u32 {
  return min(cc * CH + x, p.HS4 - 1u);
}

// qk4 returns the products q·kᵀ of 4 q rows (row handles ra) and 4 k rows
// (rb) over the full head: lane r of column j is q row r times k row j.
fn qk4(ra: vec4<u32>, rb: vec4<u32>) -> mat4x4<f32> {
  var s = mat4x4<f32>();
  for (var c = 0u; c < p.HS4; c++) {
    let a0 = ld_q(ra.x, c);
    let a1 = ld_q(ra.y, c);
    let a2 = ld_q(ra.z, c);
    let a3 = ld_q(ra.w, c);
    let b0 = ld_k(rb.x, c);
    let b1 = ld_k(rb.y, c);
    let b2 = ld_k(rb.z, c);
    let b3 = ld_k(rb.w, c);
    s[0] += vec4<f32>(dot(a0, b0), dot(a1, b0), dot(a2, b0), dot(a3, b0));
    s[1] += vec4<f32>(dot(a0, b1), dot(a1, b1), dot(a2, b1), dot(a3, b1));
    s[2] += vec4<f32>(dot(a0, b2), dot(a1, b2), dot(a2, b2), dot(a3, b2));
    s[3] += vec4<f32>(dot(a0, b3), dot(a1, b3), dot(a2, b3), dot(a3, b3));
  }
  return s;
}

// dv4 is qk4 for dout·vᵀ.
fn dv4(ra: vec4<u32>, rb: vec4<u32>) -> mat4x4<f32> {
  var s = mat4x4<f32>();
  for (var c = 0u; c < p.HS4; c++) {
    let a0 = ld_dout(ra.x, c);
    let a1 = ld_dout(ra.y, c);
    let a2 = ld_dout(ra.z, c);
    let a3 = ld_dout(ra.w, c);
    let b0 = ld_v(rb.x, c);
    let b1 = ld_v(rb.y, c);
    let b2 = ld_v(rb.z, c);
    let b3 = ld_v(rb.w, c);
    s[0] += vec4<f32>(dot(a0, b0), dot(a1, b0), dot(a2, b0), dot(a3, b0));
    s[1] += vec4<f32>(dot(a0, b1), dot(a1, b1), dot(a2, b1), dot(a3, b1));
    s[2] += vec4<f32>(dot(a0, b2), dot(a1, b2), dot(a2, b2), dot(a3, b2));
    s[3] += vec4<f32>(dot(a0, b3), dot(a1, b3), dot(a2, b3), dot(a3, b3));
  }
  return s;
}

// rowdot4 returns D_t = dout_t·out_t of 4 rows.
fn rowdot4(r: vec4<u32>) -> vec4<f32> {
  var D = vec4<f32>(0.0);
  for (var c = 0u; c < p.HS4; c++) {
    D += vec4<f32>(dot(ld_dout(r.x, c), ld_o(r.x, c)), dot(ld_dout(r.y, c), ld_o(r.y, c)),
                   dot(ld_dout(r.z, c), ld_o(r.z, c)), dot(ld_dout(r.w, c), ld_o(r.w, c)));
  }
  return D;
}

// forward: out = softmax(q·kᵀ*scale + causal mask)·v and lse with the online
// softmax (running maximum m, sum l, accumulator rescaled by exp(m_old -
// m_new)), one rescale per block of 4 keys. Lane r of m, l and of the score
// vectors s[j] is query row t0+r; s[j] holds key j0+j.
@compute @workgroup_size(8)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let it = item(wid, li);
  if (!it.ok) {
    return;
  }
  setHead(it.bh);
  let t0 = 4u * it.blk;
  let qr = rows4(it.bh, t0);
  let t = vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u);
  var o: array<vec4<f32>, RN>;
  for (var x = 0u; x < RN; x++) {
    o[x] = vec4<f32>(0.0);
  }
  var m = vec4<f32>(NEG);
  var l = vec4<f32>(0.0);
  for (var kb = 0u; kb <= it.blk; kb++) {
    let j0 = 4u * kb;
    let kr = rows4(it.bh, j0);
    let s = qk4(qr, kr);
    // Key j is visible to query t when j <= t; key j0 always is (j0 <= t0),
    // so mn is a real score and masked keys get probability 0.
    let v0 = vec4<u32>(j0) <= t;
    let v1 = vec4<u32>(j0 + 1u) <= t;
    let v2 = vec4<u32>(j0 + 2u) <= t;
    let v3 = vec4<u32>(j0 + 3u) <= t;
    let s0 = select(vec4<f32>(NEG), s[0] * p.scale, v0);
    let s1 = select(vec4<f32>(NEG), s[1] * p.scale, v1);
    let s2 = select(vec4<f32>(NEG), s[2] * p.scale, v2);
    let s3 = select(vec4<f32>(NEG), s[3] * p.scale, v3);
    let mn = max(m, max(max(s0, s1), max(s2, s3)));
    let alpha = exp(m - mn);
    let p0 = select(vec4<f32>(0.0), exp(s0 - mn), v0);
    let p1 = select(vec4<f32>(0.0), exp(s1 - mn), v1);
    let p2 = select(vec4<f32>(0.0), exp(s2 - mn), v2);
    let p3 = select(vec4<f32>(0.0), exp(s3 - mn), v3);
    l = l * alpha + (p0 + p1) + (p2 + p3);
    m = mn;
    for (var x = 0u; x < CH; x++) {
      let c = col(it.cc, x);
      let w0 = ld_v(kr.x, c);
      let w1 = ld_v(kr.y, c);
      let w2 = ld_v(kr.z, c);
      let w3 = ld_v(kr.w, c);
      o[x] = o[x] * alpha.x + p0.x * w0 + p1.x * w1 + p2.x * w2 + p3.x * w3;
      o[CH + x] = o[CH + x] * alpha.y + p0.y * w0 + p1.y * w1 + p2.y * w2 + p3.y * w3;
      o[2u * CH + x] = o[2u * CH + x] * alpha.z + p0.z * w0 + p1.z * w1 + p2.z * w2 + p3.z * w3;
      o[3u * CH + x] = o[3u * CH + x] * alpha.w + p0.w * w0 + p1.w * w1 + p2.w * w2 + p3.w * w3;
    }
  }
  // l >= 1 on every row (its maximum contributes exp(0)).
  let inv = 1.0 / l;
  let ok = t < vec4<u32>(p.T);
  for (var x = 0u; x < CH; x++) {
    let c = it.cc * CH + x;
    if (c < p.HS4) {
      if (ok.x) {
        out[flat(qr.x) + c] = o[x] * inv.x;
      }
      if (ok.y) {
        out[flat(qr.y) + c] = o[CH + x] * inv.y;
      }
      if (ok.z) {
        out[flat(qr.z) + c] = o[2u * CH + x] * inv.z;
      }
      if (ok.w) {
        out[flat(qr.w) + c] = o[3u * CH + x] * inv.w;
      }
    }
  }
  if (it.cc == 0u) {
    let lv = m + log(l);
    let lr = it.bh * p.T + t0;
    for (var r = 0u; r < 4u; r++) {
      if (ok[r]) {
        lse[lr + r] = lv[r];
      }
    }
  }
}

// backward_q: dq_t = scale * Σ_j P_tj (dout_t·v_j - D_t) k_j over keys
// j <= t, with P_tj = exp(q_t·k_j*scale - lse_t) recomputed and D_t =
// dout_t·out_t. Lane r of the score vectors is query row t0+r.
@compute @workgroup_size(8)
fn backward_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let it = item(wid, li);
  if (!it.ok) {
    return;
  }
  setHead(it.bh);
  let t0 = 4u * it.blk;
  let qr = rows4(it.bh, t0);
  let t = vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u);
  var g: array<vec4<f32>, RN>;
  for (var x = 0u; x < RN; x++) {
    g[x] = vec4<f32>(0.0);
  }
  let D = rowdot4(qr);
  let lr = it.bh * p.T;
  let tc = min(t, vec4<u32>(p.T - 1u));
  let L = vec4<f32>(lse_in[lr + tc.x], lse_in[lr + tc.y], lse_in[lr + tc.z], lse_in[lr + tc.w]);
  for (var kb = 0u; kb <= it.blk; kb++) {
    let j0 = 4u * kb;
    let kr = rows4(it.bh, j0);
    let s = qk4(qr, kr);
    let e = dv4(qr, kr);
    // Visible scores are at most lse; the min keeps masked ones finite.
    let z = vec4<f32>(0.0);
    let ds0 = select(z, exp(min(s[0] * p.scale - L, z)) * (e[0] - D), vec4<u32>(j0) <= t);
    let ds1 = select(z, exp(min(s[1] * p.scale - L, z)) * (e[1] - D), vec4<u32>(j0 + 1u) <= t);
    let ds2 = select(z, exp(min(s[2] * p.scale - L, z)) * (e[2] - D), vec4<u32>(j0 + 2u) <= t);
    let ds3 = select(z, exp(min(s[3] * p.scale - L, z)) * (e[3] - D), vec4<u32>(j0 + 3u) <= t);
    for (var x = 0u; x < CH; x++) {
      let c = col(it.cc, x);
      let k0 = ld_k(kr.x, c);
      let k1 = ld_k(kr.y, c);
      let k2 = ld_k(kr.z, c);
      let k3 = ld_k(kr.w, c);
      g[x] += ds0.x * k0 + ds1.x * k1 + ds2.x * k2 + ds3.x * k3;
      g[CH + x] += ds0.y * k0 + ds1.y * k1 + ds2.y * k2 + ds3.y * k3;
      g[2u * CH + x] += ds0.z * k0 + ds1.z * k1 + ds2.z * k2 + ds3.z * k3;
      g[3u * CH + x] += ds0.w * k0 + ds1.w * k1 + ds2.w * k2 + ds3.w * k3;
    }
  }
  let ok = t < vec4<u32>(p.T);
  for (var x = 0u; x < CH; x++) {
    let c = it.cc * CH + x;
    if (c < p.HS4) {
      if (ok.x) {
        dq[flat(qr.x) + c] = g[x] * p.scale;
      }
      if (ok.y) {
        dq[flat(qr.y) + c] = g[CH + x] * p.scale;
      }
      if (ok.z) {
        dq[flat(qr.z) + c] = g[2u * CH + x] * p.scale;
      }
      if (ok.w) {
        dq[flat(qr.w) + c] = g[3u * CH + x] * p.scale;
      }
    }
  }
}

// row_stats: D_t = dout_t·out_t of every row of pairs bh0 .. bh0+nbh-1,
// stored flat at dstat[bh*T + t]. The launcher points dstat at the dq
// buffer: dq is scratch until backward_q, which runs last, overwrites it.
@compute @workgroup_size(64)
fn row_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * p.nwg_x + wid.x) * 64u + li;
  if (i >= p.nbh * p.T) {
    return;
  }
  let bh = p.bh0 + i / p.T;
  let t = i % p.T;
  setHead(bh);
  let r = rows4(bh, t).x;
  var D = 0.0;
  for (var c = 0u; c < p.HS4; c++) {
    D += dot(ld_dout(r, c), ld_o(r, c));
  }
  dstat[bh * p.T + t] = D;
}

// backward_kv: for key j, dk_j = scale * Σ_t P_tj (dout_t·v_j - D_t) q_t and
// dv_j = Σ_t P_tj dout_t over queries t >= j, with D_t from row_stats. The
// invocation owns keys j0 .. j0+3 and walks query blocks from its own on;
// both gradients share the recomputed P (one pass, not one per gradient:
// ~6% faster at HS 64, and one compile instead of two). Column x of the
// score matrices is query t0+x, lane j key j0+j.
@compute @workgroup_size(8)
fn backward_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let it = item(wid, li);
  if (!it.ok) {
    return;
  }
  setHead(it.bh);
  let j0 = 4u * it.blk;
  let kr = rows4(it.bh, j0);
  let j = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
  var gk: array<vec4<f32>, RN>;
  var gv: array<vec4<f32>, RN>;
  for (var x = 0u; x < RN; x++) {
    gk[x] = vec4<f32>(0.0);
    gv[x] = vec4<f32>(0.0);
  }
  let lr = it.bh * p.T;
  let nb = (p.T + 3u) / 4u;
  for (var qb = it.blk; qb < nb; qb++) {
    let t0 = 4u * qb;
    let qr = rows4(it.bh, t0);
    let s = transpose(qk4(qr, kr));
    let e = transpose(dv4(qr, kr));
    let tc = min(vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u), vec4<u32>(p.T - 1u));
    // Query t sees key j when j <= t < T; visible scores are at most lse, the
    // min keeps masked ones finite.
    let z = vec4<f32>(0.0);
    let p0 = select(z, exp(min(s[0] * p.scale - lse_in[lr + tc.x], z)), (j <= vec4<u32>(t0)) & vec4<bool>(t0 < p.T));
    let p1 = select(z, exp(min(s[1] * p.scale - lse_in[lr + tc.y], z)), (j <= vec4<u32>(t0 + 1u)) & vec4<bool>(t0 + 1u < p.T));
    let p2 = select(z, exp(min(s[2] * p.scale - lse_in[lr + tc.z], z)), (j <= vec4<u32>(t0 + 2u)) & vec4<bool>(t0 + 2u < p.T));
    let p3 = select(z, exp(min(s[3] * p.scale - lse_in[lr + tc.w], z)), (j <= vec4<u32>(t0 + 3u)) & vec4<bool>(t0 + 3u < p.T));
    let ds0 = p0 * (e[0] - d_in[lr + tc.x]);
    let ds1 = p1 * (e[1] - d_in[lr + tc.y]);
    let ds2 = p2 * (e[2] - d_in[lr + tc.z]);
    let ds3 = p3 * (e[3] - d_in[lr + tc.w]);
    for (var x = 0u; x < CH; x++) {
      let c = col(it.cc, x);
      let q0 = ld_q(qr.x, c);
      let q1 = ld_q(qr.y, c);
      let q2 = ld_q(qr.z, c);
      let q3 = ld_q(qr.w, c);
      gk[x] += ds0.x * q0 + ds1.x * q1 + ds2.x * q2 + ds3.x * q3;
      gk[CH + x] += ds0.y * q0 + ds1.y * q1 + ds2.y * q2 + ds3.y * q3;
      gk[2u * CH + x] += ds0.z * q0 + ds1.z * q1 + ds2.z * q2 + ds3.z * q3;
      gk[3u * CH + x] += ds0.w * q0 + ds1.w * q1 + ds2.w * q2 + ds3.w * q3;
      let d0 = ld_dout(qr.x, c);
      let d1 = ld_dout(qr.y, c);
      let d2 = ld_dout(qr.z, c);
      let d3 = ld_dout(qr.w, c);
      gv[x] += p0.x * d0 + p1.x * d1 + p2.x * d2 + p3.x * d3;
      gv[CH + x] += p0.y * d0 + p1.y * d1 + p2.y * d2 + p3.y * d3;
      gv[2u * CH + x] += p0.z * d0 + p1.z * d1 + p2.z * d2 + p3.z * d3;
      gv[3u * CH + x] += p0.w * d0 + p1.w * d1 + p2.w * d2 + p3.w * d3;
    }
  }
  let ok = j < vec4<u32>(p.T);
  for (var x = 0u; x < CH; x++) {
    let c = it.cc * CH + x;
    if (c < p.HS4) {
      if (ok.x) {
        dk[flat(kr.x) + c] = gk[x] * p.scale;
        dv[flat(kr.x) + c] = gv[x];
      }
      if (ok.y) {
        dk[flat(kr.y) + c] = gk[CH + x] * p.scale;
        dv[flat(kr.y) + c] = gv[CH + x];
      }
      if (ok.z) {
        dk[flat(kr.z) + c] = gk[2u * CH + x] * p.scale;
        dv[flat(kr.z) + c] = gv[2u * CH + x];
      }
      if (ok.w) {
        dk[flat(kr.w) + c] = gk[3u * CH + x] * p.scale;
        dv[flat(kr.w) + c] = gv[3u * CH + x];
      }
    }
  }
}
