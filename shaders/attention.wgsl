// Causal multi-head attention, memory-efficient (flash-attention style).
//
// q, k, v, out and their gradients are (B, T, C) row-major with C = NH*HS;
// head h owns columns h*HS .. h*HS+HS-1 of each row. Rows are read as vec4s,
// so HS is a multiple of 4 (HS4 = HS/4 vec4s per head row, at most 32).
// lse is the row log-sum-exp (B, NH, T) the forward saves for the backward.
//
// Every workgroup owns one (batch, head) pair bh = b*NH + h and one block of
// FT rows (queries for forward and backward_q, keys for backward_kv), and
// walks the FT-row tiles on the other side of the causal mask, so no T x T
// matrix ever reaches global memory; only FT x FT tiles live in workgroup
// memory. Invocation (a, b) of the FT*FT/8 handles 4 rows of its block
// against 2 rows of the tile (each loaded vec4 feeds several products;
// WEBGPU.md: on lavapipe loads, not flops, bound the speed), and accumulates
// vec4 chunks b and b+16 of its 4 output rows. Loops run over HS4 or over FT
// per tile, so one invocation runs at most ~128 trips per tile and
// ceil(T/FT) tiles: ~16k at T = 4096 for every HS <= 128, well under
// lavapipe's 65,535-trip loop limiter (WEBGPU.md trap 2) up to T ~ 16k.
//
// A dispatch covers pairs bh0 .. bh0+nbh-1 and blocks blk0 .. blk0+nblk-1,
// so the Go launcher can split long work into several bounded dispatches.
// The workgroup index is folded into 2-D (wid.y*nwg_x + wid.x).

struct Params {
  T: u32,
  NH: u32,
  HS4: u32,    // HS / 4
  bh0: u32,    // first (batch, head) pair of this dispatch
  nbh: u32,    // (batch, head) pairs in this dispatch
  blk0: u32,   // first block of FT rows of this dispatch
  nblk: u32,   // blocks per pair in this dispatch
  nwg_x: u32,  // workgroups along x of the folded grid
  scale: f32,  // 1/sqrt(HS)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

// NEG marks a masked score: finite (WGSL may assume no infinities) and so
// negative that exp(NEG - m) is 0 for any real row maximum m.
const NEG: f32 = -3.0e38;
// FT is the tile: rows per workgroup block and per step.
const FT: u32 = {{FTILE}}u;

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
// backward_q / backward_kv (share binding numbers with the forward's outputs)
@group(0) @binding(1) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> lse_in: array<f32>;
// inputs of all three
@group(0) @binding(3) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> o_in: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;

// sp and sq hold FT x FT per-(row, row) values of a tile (scores,
// probabilities, dS) as vec4s over 4 consecutive rows of the workgroup's own
// block: element [x*G + a] holds column x of rows 4a..4a+3, G = FT/4, so the
// accumulation loops read one vec4 where they would read four scalars.
// srow4 holds one vec4 per 4 rows (the forward's rescale factor, then 1/l);
// srow and srow2 one value per row (D and lse in the backward).
const G: u32 = {{FTILE}}u / 4u;
var<workgroup> sp: array<vec4<f32>, {{FTILE_SQ4}}>;
var<workgroup> sq: array<vec4<f32>, {{FTILE_SQ4}}>;
var<workgroup> srow4: array<vec4<f32>, {{FTILE4}}>;
var<workgroup> srow: array<f32, {{FTILE}}>;
var<workgroup> srow2: array<f32, {{FTILE}}>;

// row returns the vec4 index of element 0 of head bh's slice of row t; the
// slice of row t+x starts x*NH*HS4 later.
fn row(bh: u32, t: u32) -> u32 {
  let b = bh / p.NH;
  let h = bh % p.NH;
  return (b * p.T + t) * p.NH * p.HS4 + h * p.HS4;
}

// rows4 returns row() of rows t0 .. t0+3, each clamped to T-1 so that a row
// past the end reads a valid (and masked) row.
fn rows4(bh: u32, t0: u32) -> vec4<u32> {
  return vec4<u32>(row(bh, min(t0, p.T - 1u)), row(bh, min(t0 + 1u, p.T - 1u)),
                   row(bh, min(t0 + 2u, p.T - 1u)), row(bh, min(t0 + 3u, p.T - 1u)));
}

// forward: out = softmax(q·kᵀ*scale + causal mask)·v and lse, with the
// online softmax: a running row maximum m and sum l, and an unnormalised
// accumulator rescaled by exp(m_old - m_new) whenever the maximum grows.
//
// The workgroup owns FT query rows and walks key tiles of FT keys. Scores are
// register-blocked (each invocation scores 4 queries x 2 keys, so a loaded
// vec4 feeds several products: loads, not flops, bound lavapipe), the
// softmax of a tile is done by G invocations, 4 rows each as vec4s, and
// each invocation accumulates 4 rows x 2 vec4 chunks of the output. Loop
// trips per invocation and tile: HS4 + 2*FT + FT <= 128; with T/FT tiles
// that is 16k at T = 4096.
@compute @workgroup_size({{FWG}})
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = wid.y * p.nwg_x + wid.x;
  if (w >= p.nbh * p.nblk) {
    return;
  }
  let bh = p.bh0 + w / p.nblk;
  let qb = p.blk0 + w % p.nblk;
  let C4 = p.NH * p.HS4;
  let a = li / 16u;        // query rows 4a .. 4a+3 of the block
  let b = li % 16u;        // keys 2b, 2b+1 of a tile; output chunks b, b+16
  let t0 = qb * FT + 4u * a;
  let qr0 = row(bh, min(t0, p.T - 1u));
  let qr1 = row(bh, min(t0 + 1u, p.T - 1u));
  let qr2 = row(bh, min(t0 + 2u, p.T - 1u));
  let qr3 = row(bh, min(t0 + 3u, p.T - 1u));
  let c0 = b;
  let c1 = b + 16u;
  let ok0 = c0 < p.HS4;
  let ok1 = c1 < p.HS4;
  let t = vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u);
  let vis = t < vec4<u32>(p.T);
  var m = vec4<f32>(NEG);  // rows 4li..4li+3: running maximum (li < G)
  var l = vec4<f32>(0.0);  // and running sum
  var o00 = vec4<f32>(0.0);
  var o01 = vec4<f32>(0.0);
  var o10 = vec4<f32>(0.0);
  var o11 = vec4<f32>(0.0);
  var o20 = vec4<f32>(0.0);
  var o21 = vec4<f32>(0.0);
  var o30 = vec4<f32>(0.0);
  var o31 = vec4<f32>(0.0);
  for (var kt = 0u; kt <= qb; kt++) {
    let k0 = kt * FT + 2u * b;
    let kr0 = row(bh, min(k0, p.T - 1u));
    let kr1 = row(bh, min(k0 + 1u, p.T - 1u));
    // Lane r of sx (sy) is the score of query t0+r and key k0 (k0+1).
    var sx = vec4<f32>(0.0);
    var sy = vec4<f32>(0.0);
    for (var c = 0u; c < p.HS4; c++) {
      let ka = k[kr0 + c];
      let kb = k[kr1 + c];
      let q0 = q[qr0 + c];
      let q1 = q[qr1 + c];
      let q2 = q[qr2 + c];
      let q3 = q[qr3 + c];
      sx += vec4<f32>(dot(q0, ka), dot(q1, ka), dot(q2, ka), dot(q3, ka));
      sy += vec4<f32>(dot(q0, kb), dot(q1, kb), dot(q2, kb), dot(q3, kb));
    }
    // Key k is visible to query t when k <= t < T.
    sp[2u * b * G + a] = select(vec4<f32>(NEG), sx * p.scale, vis & (vec4<u32>(k0) <= t));
    sp[(2u * b + 1u) * G + a] = select(vec4<f32>(NEG), sy * p.scale, vis & (vec4<u32>(k0 + 1u) <= t));
    workgroupBarrier();
    // Rows 4li..4li+3: new maximum, probabilities in place, rescale factor.
    if (li < G) {
      var mt = m;
      for (var x = 0u; x < FT; x++) {
        mt = max(mt, sp[x * G + li]);
      }
      var sum = vec4<f32>(0.0);
      for (var x = 0u; x < FT; x++) {
        let sv = sp[x * G + li];
        let pv = select(vec4<f32>(0.0), exp(sv - mt), sv > vec4<f32>(0.5 * NEG));
        sp[x * G + li] = pv;
        sum += pv;
      }
      let alpha = exp(m - mt);
      l = l * alpha + sum;
      m = mt;
      srow4[li] = alpha;
    }
    workgroupBarrier();
    let al = srow4[a];
    o00 *= al.x;
    o01 *= al.x;
    o10 *= al.y;
    o11 *= al.y;
    o20 *= al.z;
    o21 *= al.z;
    o30 *= al.w;
    o31 *= al.w;
    let nk = min(FT, p.T - kt * FT);
    let vr = row(bh, kt * FT);
    for (var x = 0u; x < nk; x++) {
      var v0 = vec4<f32>(0.0);
      var v1 = vec4<f32>(0.0);
      if (ok0) {
        v0 = v[vr + x * C4 + c0];
      }
      if (ok1) {
        v1 = v[vr + x * C4 + c1];
      }
      let pv = sp[x * G + a];
      o00 += pv.x * v0;
      o01 += pv.x * v1;
      o10 += pv.y * v0;
      o11 += pv.y * v1;
      o20 += pv.z * v0;
      o21 += pv.z * v1;
      o30 += pv.w * v0;
      o31 += pv.w * v1;
    }
    workgroupBarrier();
  }
  if (li < G) {
    srow4[li] = 1.0 / max(l, vec4<f32>(1e-30));  // l >= 1 on rows below T
    let lv = m + log(max(l, vec4<f32>(1e-30)));
    let r0 = qb * FT + 4u * li;
    for (var r = 0u; r < 4u; r++) {
      if (r0 + r < p.T) {
        lse[bh * p.T + r0 + r] = lv[r];
      }
    }
  }
  workgroupBarrier();
  let inv = srow4[a];
  if (t0 < p.T) {
    store_out(qr0, c0, c1, o00 * inv.x, o01 * inv.x);
  }
  if (t0 + 1u < p.T) {
    store_out(qr1, c0, c1, o10 * inv.y, o11 * inv.y);
  }
  if (t0 + 2u < p.T) {
    store_out(qr2, c0, c1, o20 * inv.z, o21 * inv.z);
  }
  if (t0 + 3u < p.T) {
    store_out(qr3, c0, c1, o30 * inv.w, o31 * inv.w);
  }
}

// store_out writes chunks c0 and c1 of an output row, those below HS4.
fn store_out(r: u32, c0: u32, c1: u32, x0: vec4<f32>, x1: vec4<f32>) {
  if (c0 < p.HS4) {
    out[r + c0] = x0;
  }
  if (c1 < p.HS4) {
    out[r + c1] = x1;
  }
}

// row_stats stores, for invocations li < FT, D = dout·out of query row
// t0+li into srow and its lse into srow2 (0 past T). At most HS4 trips.
fn row_stats(bh: u32, t0: u32, li: u32) {
  if (li < FT) {
    let t = t0 + li;
    var D = 0.0;
    var L = 0.0;
    if (t < p.T) {
      let r = row(bh, t);
      for (var c = 0u; c < p.HS4; c++) {
        D += dot(dout[r + c], o_in[r + c]);
      }
      L = lse_in[bh * p.T + t];
    }
    srow[li] = D;
    srow2[li] = L;
  }
}

// backward_q: dq_t = scale * Σ_k P_tk (dout_t·v_k - D_t) k_k over keys
// k <= t, with P_tk = exp(q_t·k_k*scale - lse_t) recomputed per key tile and
// D_t = dout_t·out_t. Blocked like the forward: invocation (a, b) scores
// query rows 4a..4a+3 against keys 2b, 2b+1, then accumulates chunks b and
// b+16 of its four dq rows. Loop trips per invocation and tile: HS4 + FT <= 64.
@compute @workgroup_size({{FWG}})
fn backward_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = wid.y * p.nwg_x + wid.x;
  if (w >= p.nbh * p.nblk) {
    return;
  }
  let bh = p.bh0 + w / p.nblk;
  let qb = p.blk0 + w % p.nblk;
  let C4 = p.NH * p.HS4;
  let a = li / 16u;
  let b = li % 16u;
  let t0 = qb * FT + 4u * a;
  let qr = rows4(bh, t0);
  let c0 = b;
  let c1 = b + 16u;
  let ok0 = c0 < p.HS4;
  let ok1 = c1 < p.HS4;
  row_stats(bh, qb * FT, li);
  workgroupBarrier();
  let D = vec4<f32>(srow[4u * a], srow[4u * a + 1u], srow[4u * a + 2u], srow[4u * a + 3u]);
  let L = vec4<f32>(srow2[4u * a], srow2[4u * a + 1u], srow2[4u * a + 2u], srow2[4u * a + 3u]);
  let t = vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u);
  let vis = t < vec4<u32>(p.T);
  var g00 = vec4<f32>(0.0);
  var g01 = vec4<f32>(0.0);
  var g10 = vec4<f32>(0.0);
  var g11 = vec4<f32>(0.0);
  var g20 = vec4<f32>(0.0);
  var g21 = vec4<f32>(0.0);
  var g30 = vec4<f32>(0.0);
  var g31 = vec4<f32>(0.0);
  for (var kt = 0u; kt <= qb; kt++) {
    let k0 = kt * FT + 2u * b;
    let kr0 = row(bh, min(k0, p.T - 1u));
    let kr1 = row(bh, min(k0 + 1u, p.T - 1u));
    // Lane r of sx (sy) is the score of query t0+r and key k0 (k0+1); px
    // and py are the matching dout·v.
    var sx = vec4<f32>(0.0);
    var sy = vec4<f32>(0.0);
    var px = vec4<f32>(0.0);
    var py = vec4<f32>(0.0);
    for (var c = 0u; c < p.HS4; c++) {
      let ka = k[kr0 + c];
      let kb = k[kr1 + c];
      let va = v[kr0 + c];
      let vb = v[kr1 + c];
      let q0 = q[qr.x + c];
      let q1 = q[qr.y + c];
      let q2 = q[qr.z + c];
      let q3 = q[qr.w + c];
      let d0 = dout[qr.x + c];
      let d1 = dout[qr.y + c];
      let d2 = dout[qr.z + c];
      let d3 = dout[qr.w + c];
      sx += vec4<f32>(dot(q0, ka), dot(q1, ka), dot(q2, ka), dot(q3, ka));
      sy += vec4<f32>(dot(q0, kb), dot(q1, kb), dot(q2, kb), dot(q3, kb));
      px += vec4<f32>(dot(d0, va), dot(d1, va), dot(d2, va), dot(d3, va));
      py += vec4<f32>(dot(d0, vb), dot(d1, vb), dot(d2, vb), dot(d3, vb));
    }
    // Key k is visible to query t when k <= t < T.
    let okx = vis & (vec4<u32>(k0) <= t);
    let oky = vis & (vec4<u32>(k0 + 1u) <= t);
    // Visible scores are at most lse; the min keeps masked ones finite.
    let dsx = select(vec4<f32>(0.0), exp(min(sx * p.scale - L, vec4<f32>(0.0))) * (px - D), okx);
    let dsy = select(vec4<f32>(0.0), exp(min(sy * p.scale - L, vec4<f32>(0.0))) * (py - D), oky);
    sp[2u * b * G + a] = dsx;
    sp[(2u * b + 1u) * G + a] = dsy;
    workgroupBarrier();
    let nk = min(FT, p.T - kt * FT);
    let kr = row(bh, kt * FT);
    for (var x = 0u; x < nk; x++) {
      var k0v = vec4<f32>(0.0);
      var k1v = vec4<f32>(0.0);
      if (ok0) {
        k0v = k[kr + x * C4 + c0];
      }
      if (ok1) {
        k1v = k[kr + x * C4 + c1];
      }
      let e = sp[x * G + a];
      g00 += e.x * k0v;
      g01 += e.x * k1v;
      g10 += e.y * k0v;
      g11 += e.y * k1v;
      g20 += e.z * k0v;
      g21 += e.z * k1v;
      g30 += e.w * k0v;
      g31 += e.w * k1v;
    }
    workgroupBarrier();
  }
  if (t0 < p.T) {
    store_dq(qr.x, c0, c1, g00 * p.scale, g01 * p.scale);
  }
  if (t0 + 1u < p.T) {
    store_dq(qr.y, c0, c1, g10 * p.scale, g11 * p.scale);
  }
  if (t0 + 2u < p.T) {
    store_dq(qr.z, c0, c1, g20 * p.scale, g21 * p.scale);
  }
  if (t0 + 3u < p.T) {
    store_dq(qr.w, c0, c1, g30 * p.scale, g31 * p.scale);
  }
}

// store_dq writes chunks c0 and c1 of a dq row, those below HS4.
fn store_dq(r: u32, c0: u32, c1: u32, x0: vec4<f32>, x1: vec4<f32>) {
  if (c0 < p.HS4) {
    dq[r + c0] = x0;
  }
  if (c1 < p.HS4) {
    dq[r + c1] = x1;
  }
}

// backward_kv: for key k, dv_k = Σ_t P_tk dout_t and
// dk_k = scale * Σ_t P_tk (dout_t·v_k - D_t) q_t over queries t >= k. The
// workgroup owns FT keys and walks the query tiles from its own block on;
// invocation (a, b) scores keys 4a..4a+3 against queries 2b, 2b+1, then
// accumulates chunks b and b+16 of its four dk and dv rows. Loop trips per
// invocation and tile: HS4 (row stats) + HS4 + FT <= 96; 12k at T = 4096.
@compute @workgroup_size({{FWG}})
fn backward_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = wid.y * p.nwg_x + wid.x;
  if (w >= p.nbh * p.nblk) {
    return;
  }
  let bh = p.bh0 + w / p.nblk;
  let kb = p.blk0 + w % p.nblk;
  let C4 = p.NH * p.HS4;
  let a = li / 16u;
  let b = li % 16u;
  let k0 = kb * FT + 4u * a;
  let kr = rows4(bh, k0);
  let kt4 = vec4<u32>(k0, k0 + 1u, k0 + 2u, k0 + 3u);
  let c0 = b;
  let c1 = b + 16u;
  let ok0 = c0 < p.HS4;
  let ok1 = c1 < p.HS4;
  var gk00 = vec4<f32>(0.0);
  var gk01 = vec4<f32>(0.0);
  var gk10 = vec4<f32>(0.0);
  var gk11 = vec4<f32>(0.0);
  var gk20 = vec4<f32>(0.0);
  var gk21 = vec4<f32>(0.0);
  var gk30 = vec4<f32>(0.0);
  var gk31 = vec4<f32>(0.0);
  var gv00 = vec4<f32>(0.0);
  var gv01 = vec4<f32>(0.0);
  var gv10 = vec4<f32>(0.0);
  var gv11 = vec4<f32>(0.0);
  var gv20 = vec4<f32>(0.0);
  var gv21 = vec4<f32>(0.0);
  var gv30 = vec4<f32>(0.0);
  var gv31 = vec4<f32>(0.0);
  let ntiles = (p.T + FT - 1u) / FT;
  for (var qt = kb; qt < ntiles; qt++) {
    row_stats(bh, qt * FT, li);
    let t0 = qt * FT + 2u * b;
    let qr0 = row(bh, min(t0, p.T - 1u));
    let qr1 = row(bh, min(t0 + 1u, p.T - 1u));
    // Lane r of sx (sy) is the score of key k0+r and query t0 (t0+1); px
    // and py are the matching dout·v.
    var sx = vec4<f32>(0.0);
    var sy = vec4<f32>(0.0);
    var px = vec4<f32>(0.0);
    var py = vec4<f32>(0.0);
    for (var c = 0u; c < p.HS4; c++) {
      let qa = q[qr0 + c];
      let qc = q[qr1 + c];
      let da = dout[qr0 + c];
      let dc = dout[qr1 + c];
      let k0v = k[kr.x + c];
      let k1v = k[kr.y + c];
      let k2v = k[kr.z + c];
      let k3v = k[kr.w + c];
      let v0 = v[kr.x + c];
      let v1 = v[kr.y + c];
      let v2 = v[kr.z + c];
      let v3 = v[kr.w + c];
      sx += vec4<f32>(dot(qa, k0v), dot(qa, k1v), dot(qa, k2v), dot(qa, k3v));
      sy += vec4<f32>(dot(qc, k0v), dot(qc, k1v), dot(qc, k2v), dot(qc, k3v));
      px += vec4<f32>(dot(da, v0), dot(da, v1), dot(da, v2), dot(da, v3));
      py += vec4<f32>(dot(dc, v0), dot(dc, v1), dot(dc, v2), dot(dc, v3));
    }
    workgroupBarrier();
    // Query t sees key k when k <= t < T (then k < T too).
    let okx = (kt4 <= vec4<u32>(t0)) & vec4<bool>(t0 < p.T);
    let oky = (kt4 <= vec4<u32>(t0 + 1u)) & vec4<bool>(t0 + 1u < p.T);
    // Visible scores are at most lse; the min keeps masked ones finite.
    let prx = select(vec4<f32>(0.0), exp(min(sx * p.scale - srow2[2u * b], vec4<f32>(0.0))), okx);
    let pry = select(vec4<f32>(0.0), exp(min(sy * p.scale - srow2[2u * b + 1u], vec4<f32>(0.0))), oky);
    let dsx = prx * (px - srow[2u * b]);
    let dsy = pry * (py - srow[2u * b + 1u]);
    // sp[query][keys] = P, sq[query][keys] = dS.
    sp[2u * b * G + a] = prx;
    sp[(2u * b + 1u) * G + a] = pry;
    sq[2u * b * G + a] = dsx;
    sq[(2u * b + 1u) * G + a] = dsy;
    workgroupBarrier();
    let nq = min(FT, p.T - qt * FT);
    let qr = row(bh, qt * FT);
    for (var x = 0u; x < nq; x++) {
      var d0 = vec4<f32>(0.0);
      var d1 = vec4<f32>(0.0);
      var q0 = vec4<f32>(0.0);
      var q1 = vec4<f32>(0.0);
      if (ok0) {
        d0 = dout[qr + x * C4 + c0];
        q0 = q[qr + x * C4 + c0];
      }
      if (ok1) {
        d1 = dout[qr + x * C4 + c1];
        q1 = q[qr + x * C4 + c1];
      }
      let pv = sp[x * G + a];
      gv00 += pv.x * d0;
      gv01 += pv.x * d1;
      gv10 += pv.y * d0;
      gv11 += pv.y * d1;
      gv20 += pv.z * d0;
      gv21 += pv.z * d1;
      gv30 += pv.w * d0;
      gv31 += pv.w * d1;
      let e = sq[x * G + a];
      gk00 += e.x * q0;
      gk01 += e.x * q1;
      gk10 += e.y * q0;
      gk11 += e.y * q1;
      gk20 += e.z * q0;
      gk21 += e.z * q1;
      gk30 += e.w * q0;
      gk31 += e.w * q1;
    }
    workgroupBarrier();
  }
  if (k0 < p.T) {
    store_kv(kr.x, c0, c1, gk00 * p.scale, gk01 * p.scale, gv00, gv01);
  }
  if (k0 + 1u < p.T) {
    store_kv(kr.y, c0, c1, gk10 * p.scale, gk11 * p.scale, gv10, gv11);
  }
  if (k0 + 2u < p.T) {
    store_kv(kr.z, c0, c1, gk20 * p.scale, gk21 * p.scale, gv20, gv21);
  }
  if (k0 + 3u < p.T) {
    store_kv(kr.w, c0, c1, gk30 * p.scale, gk31 * p.scale, gv30, gv31);
  }
}

// store_kv writes chunks c0 and c1 of a dk and a dv row, those below HS4.
fn store_kv(r: u32, c0: u32, c1: u32, k0: vec4<f32>, k1: vec4<f32>, v0: vec4<f32>, v1: vec4<f32>) {
  if (c0 < p.HS4) {
    dk[r + c0] = k0;
    dv[r + c0] = v0;
  }
  if (c1 < p.HS4) {
    dk[r + c1] = k1;
    dv[r + c1] = v1;
  }
}
