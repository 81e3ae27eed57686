// Softmax cross-entropy fused with its gradient (llm.c
// fused_classifier), and a scaled sum used for the mean loss.
//
// forward_backward: one workgroup per row of logits (rows, V). Each
// invocation keeps an online (max, sum of exp(x - max)) over its strided
// elements j = lid, lid + WG, ...; a tree reduction in workgroup memory
// merges the pairs, so the row max is subtracted before every exp and
// +-300 logits stay finite. Then
//   loss[row0 + r]    = (M - logits[r, t]) + log(S)   (= logsumexp - logit of the target)
//   logits[r, j]     <- (exp(logits[r, j] - M) / S - [j == t]) * grad_scale
// with t = targets[row0 + r]. A target of 0xFFFFFFFF (ignore) gives loss 0
// and a zero gradient; any other target >= V is a caller's bug and gives a
// NaN loss (zero gradient) so that it shows in the mean loss. Each
// invocation loops 2*ceil(V/WG) + log2(WG) times, which the launcher keeps
// below lavapipe's 65,535 iterations.
//
// The trainer runs the B*T rows in chunks whose logits fit one storage
// binding (CrossEntropyRowsPerChunk): logits are bound per chunk, while
// losses and targets are bound whole and indexed from row0, so no binding
// offset needs the 256-byte alignment.

struct Params {
  V: u32,
  rows: u32,       // rows in this dispatch
  row0: u32,       // index in losses and targets of the first row
  loff: u32,       // element offset of the first row in the bound logits
  nwg_x: u32,      // workgroups along x of the folded grid
  grad_scale: f32, // 1 / tokens in the (accumulated) batch
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;

var<workgroup> wmax: array<f32, {{WG}}>;
var<workgroup> wsum: array<f32, {{WG}}>;

// Below any realistic logit: exp(neg_big - x) is 0 for every x above it.
const neg_big = -3.0e38;

// merge_row merges every invocation's (max, sum of exp(x - max)) into the
// row's (M, S) with a binary tree in workgroup memory and returns it to all
// invocations: (m1, s1) + (m2, s2) = (M, s1 exp(m1 - M) + s2 exp(m2 - M)).
fn merge_row(i: u32, m: f32, s: f32) -> vec2<f32> {
  wmax[i] = m;
  wsum[i] = s;
  workgroupBarrier();
  for (var k = {{WG}}u / 2u; k > 0u; k >>= 1u) {
    if (i < k) {
      let m1 = wmax[i];
      let m2 = wmax[i + k];
      let mm = max(m1, m2);
      wsum[i] = wsum[i] * exp(m1 - mm) + wsum[i + k] * exp(m2 - mm);
      wmax[i] = mm;
    }
    workgroupBarrier();
  }
  return vec2<f32>(wmax[0], wsum[0]);
}

@compute @workgroup_size({{WG}})
fn forward_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.y * p.nwg_x + wid.x;
  if (r >= p.rows) {
    return; // overshoot of the folded grid: the whole workgroup leaves
  }
  let base = p.loff + r * p.V;
  let t = targets[p.row0 + r];
  // An ignored row still runs the reduction (the barriers need every
  // invocation) and then writes zeros.
  let valid = t < p.V;
  // Read the target's logit before any invocation overwrites the row.
  let xt = logits[base + select(0u, t, valid)];

  var m = neg_big;
  var s = 0.0;
  for (var j = lid.x; j < p.V; j += {{WG}}u) {
    let x = logits[base + j];
    if (x > m) {
      s *= exp(m - x);
      m = x;
    }
    s += exp(x - m);
  }
  let ms = merge_row(lid.x, m, s);
  let big = ms.x;
  let sum = ms.y;
  let inv = 1.0 / sum;

  for (var j = lid.x; j < p.V; j += {{WG}}u) {
    var g = 0.0;
    if (valid) {
      g = exp(logits[base + j] - big) * inv;
      if (j == t) {
        g -= 1.0;
      }
      g *= p.grad_scale;
    }
    logits[base + j] = g;
  }
  if (lid.x == 0u) {
    var loss = 0.0;
    if (valid) {
      loss = (big - xt) + log(sum);
    } else if (t != 0xFFFFFFFFu) {
      loss = bitcast<f32>(0x7fc00000u); // quiet NaN
    }
    losses[p.row0 + r] = loss;
  }
}

// logits seen as vec4s by forward_backward4, the same computation for
// V % 4 == 0 with a row offset that is a multiple of 4 (the launcher picks
// it then): a quarter of the loads, which lavapipe turns into per-lane
// loops with bounds checks.
@group(0) @binding(2) var<storage, read_write> logits4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn forward_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.y * p.nwg_x + wid.x;
  if (r >= p.rows) {
    return;
  }
  let V4 = p.V / 4u;
  let base = (p.loff + r * p.V) / 4u;
  let t = targets[p.row0 + r];
  let valid = t < p.V;
  let tt = select(0u, t, valid);
  let xt = logits4[base + tt / 4u][tt % 4u];

  var m = neg_big;
  var s = 0.0;
  for (var j = lid.x; j < V4; j += {{WG}}u) {
    let x = logits4[base + j];
    let mx = max(max(x.x, x.y), max(x.z, x.w));
    if (mx > m) {
      s *= exp(m - mx);
      m = mx;
    }
    let e = exp(x - m);
    s += (e.x + e.y) + (e.z + e.w);
  }
  let ms = merge_row(lid.x, m, s);
  let big = ms.x;
  let sum = ms.y;
  let inv = 1.0 / sum;

  for (var j = lid.x; j < V4; j += {{WG}}u) {
    var g = vec4<f32>(0.0);
    if (valid) {
      g = exp(logits4[base + j] - big) * inv;
      if (j == t / 4u) {
        g[t % 4u] -= 1.0;
      }
      g *= p.grad_scale;
    }
    logits4[base + j] = g;
  }
  if (lid.x == 0u) {
    var loss = 0.0;
    if (valid) {
      loss = (big - xt) + log(sum);
    } else if (t != 0xFFFFFFFFu) {
      loss = bitcast<f32>(0x7fc00000u); // quiet NaN
    }
    losses[p.row0 + r] = loss;
  }
}

struct SumParams {
  count: u32,      // elements of the bound chunk of x
  accumulate: u32, // 1: add to sum_out[0]; 0: overwrite it
  scale: f32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> sp: SumParams;
@group(0) @binding(1) var<storage, read_write> sum_out: array<f32>;
@group(0) @binding(2) var<storage, read> sum_x: array<f32>;

// sum: one workgroup reduces the bound chunk x[0 : count] (each invocation
// sums a strided part of at most count/WG elements, then a tree reduction)
// and writes sum_out[0] = scale * partial, plus the previous value when
// accumulating. The launcher chains dispatches over chunks of x in order.
@compute @workgroup_size({{WG}})
fn sum(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var j = lid.x; j < sp.count; j += {{WG}}u) {
    s += sum_x[j];
  }
  wsum[lid.x] = s;
  workgroupBarrier();
  for (var k = {{WG}}u / 2u; k > 0u; k >>= 1u) {
    if (lid.x < k) {
      wsum[lid.x] += wsum[lid.x + k];
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    var out = sp.scale * wsum[0];
    if (sp.accumulate == 1u) {
      out += sum_out[0];
    }
    sum_out[0] = out;
  }
}
