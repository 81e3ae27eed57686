// RMSNorm over rows of C (N = B*T rows):
//   out = x * rstd * w,  rstd = 1/sqrt(mean(x^2) + eps)
// Backward, with dot = sum_c dout[c]*w[c]*x[c] over the row:
//   dx = rstd*w*dout - x * rstd^3 * dot / C
//   dw += sum_rows dout * x * rstd
// The row kernels run one workgroup per row; each invocation strides over
// the row (trip count ceil(C/WG)) and a workgroup tree reduction makes the
// row sum. dw is reduced by ownership, without atomics: dw_partial gives
// each invocation one column of one block of RB rows and writes
// part[block, c]; dw_reduce gives each invocation one column and adds the
// NRB block sums to dw. The launcher picks RB and NRB near sqrt(N), so both
// loops stay far below lavapipe's 65,535-iteration limit for any N.
// forward4, backward_dx4 and backward_dw_partial4 are the same kernels on
// vec4s, used when C % 4 == 0; tests pin them to the scalar ones.

struct Params {
  N: u32,      // rows
  C: u32,      // row length (d_model)
  nwg_x: u32,  // workgroups along x of the folded grid (row kernels)
  eps: f32,    // added to the mean square (forward only)
  RB: u32,     // rows per block (dw_partial)
  NRB: u32,    // number of row blocks (dw_partial, dw_reduce)
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red: array<f32, {{WG}}>;

// rowSum returns the sum of v over the workgroup's invocations. Every
// invocation of the workgroup must call it (it contains barriers).
fn rowSum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
    }
    workgroupBarrier();
  }
  return red[0];
}

// ---- forward: out (N, C), rstd_out (N) <- x (N, C), w (C)

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;

@compute @workgroup_size({{WG}})
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * p.nwg_x + wid.x;
  if (row >= p.N) {
    return; // the fold's overshoot: uniform across the workgroup
  }
  let base = row * p.C;
  var ss = 0.0;
  for (var c = lid.x; c < p.C; c += {{WG}}u) {
    let v = x[base + c];
    ss += v * v;
  }
  let r = 1.0 / sqrt(rowSum(ss, lid.x) / f32(p.C) + p.eps);
  if (lid.x == 0u) {
    rstd_out[row] = r;
  }
  for (var c = lid.x; c < p.C; c += {{WG}}u) {
    out[base + c] = x[base + c] * r * w[c];
  }
}

// ---- backward_dx: dx (N, C) <- dout (N, C), x (N, C), w (C), rstd (N)

@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;

@compute @workgroup_size({{WG}})
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * p.nwg_x + wid.x;
  if (row >= p.N) {
    return;
  }
  let base = row * p.C;
  var dot = 0.0;
  for (var c = lid.x; c < p.C; c += {{WG}}u) {
    dot += dout[base + c] * w[c] * x[base + c];
  }
  let r = rstd[row];
  let k = r * r * r * rowSum(dot, lid.x) / f32(p.C);
  for (var c = lid.x; c < p.C; c += {{WG}}u) {
    dx[base + c] = r * w[c] * dout[base + c] - x[base + c] * k;
  }
}

// ---- forward4 and backward_dx4: the same for C % 4 == 0, reading and
// writing whole vec4s (4x fewer load instructions: lavapipe compiles each
// storage load to a per-lane loop, and GPUs move 16-byte words faster).

@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> w4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * p.nwg_x + wid.x;
  if (row >= p.N) {
    return;
  }
  let C4 = p.C / 4u;
  let base = row * C4;
  var ss = 0.0;
  for (var c = lid.x; c < C4; c += {{WG}}u) {
    let v = x4[base + c];
    ss += dot(v, v);
  }
  let r = 1.0 / sqrt(rowSum(ss, lid.x) / f32(p.C) + p.eps);
  if (lid.x == 0u) {
    rstd_out[row] = r;
  }
  for (var c = lid.x; c < C4; c += {{WG}}u) {
    out4[base + c] = x4[base + c] * r * w4[c];
  }
}

@group(0) @binding(1) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn backward_dx4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * p.nwg_x + wid.x;
  if (row >= p.N) {
    return;
  }
  let C4 = p.C / 4u;
  let base = row * C4;
  var acc = 0.0;
  for (var c = lid.x; c < C4; c += {{WG}}u) {
    acc += dot(dout4[base + c] * w4[c], x4[base + c]);
  }
  let r = rstd[row];
  let k = r * r * r * rowSum(acc, lid.x) / f32(p.C);
  for (var c = lid.x; c < C4; c += {{WG}}u) {
    dx4[base + c] = r * w4[c] * dout4[base + c] - x4[base + c] * k;
  }
}

// ---- backward_dw_partial: part (NRB, C) <- dout (N, C), x (N, C), rstd (N)
// Grid: ceil(C/WG) x NRB. Binding 4 holds rstd here (w is not needed), so it
// gets its own name.

@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> part_rstd: array<f32>;

@compute @workgroup_size({{WG}})
fn backward_dw_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * {{WG}}u + lid.x;
  let blk = wid.y;
  if (c >= p.C || blk >= p.NRB) {
    return;
  }
  let r0 = blk * p.RB;
  let r1 = min(p.N, r0 + p.RB);
  var acc = 0.0;
  for (var r = r0; r < r1; r++) {
    let i = r * p.C + c;
    acc += dout[i] * x[i] * part_rstd[r];
  }
  part[blk * p.C + c] = acc;
}

// ---- backward_dw_partial4: the same for C % 4 == 0, one vec4 of columns
// per invocation; part has the same (NRB, C) layout. Grid: ceil(C/4/WG) x NRB.

@group(0) @binding(1) var<storage, read_write> part4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn backward_dw_partial4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C4 = p.C / 4u;
  let c = wid.x * {{WG}}u + lid.x;
  let blk = wid.y;
  if (c >= C4 || blk >= p.NRB) {
    return;
  }
  let r0 = blk * p.RB;
  let r1 = min(p.N, r0 + p.RB);
  var acc = vec4<f32>(0.0);
  for (var r = r0; r < r1; r++) {
    let i = r * C4 + c;
    acc += dout4[i] * x4[i] * part_rstd[r];
  }
  part4[blk * C4 + c] = acc;
}

// ---- backward_dw_reduce: dw (C) += sum over blocks of part (NRB, C)
// Grid: ceil(C/WG).

@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read> part_in: array<f32>;

@compute @workgroup_size({{WG}})
fn backward_dw_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * {{WG}}u + lid.x;
  if (c >= p.C) {
    return;
  }
  var acc = 0.0;
  for (var b = 0u; b < p.NRB; b++) {
    acc += part_in[b * p.C + c];
  }
  dw[c] += acc;
}
