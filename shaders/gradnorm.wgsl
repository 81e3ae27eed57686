// Global gradient norm for clipping, in two kernels and without atomics.
//
// squares: one workgroup owns one slot of the partials buffer and writes
// the sum of squares of its CHUNK = WG*VPI*4 gradient elements there. Each
// invocation sums VPI vec4s (strided by WG so loads coalesce), then the
// workgroup reduces with a tree in workgroup memory. A tensor of N elements
// owns ceil(N / CHUNK) consecutive slots starting at p.slot.
//
// finalize: one workgroup sums the partials and writes
//   clip.norm  = sqrt(sum of partials)
//   clip.scale = min(1, maxNorm / (norm + 1e-6)), or 0 if norm is NaN/Inf,
// which AdamW reads on the device: nothing is read back per step. NaN and
// Inf propagate through the sums on purpose, so the trainer sees them.

struct Params {
  N: u32,      // elements of this tensor (or binding chunk of it)
  nwg_x: u32,  // workgroups along x of the folded grid
  slot: u32,   // first partials slot this dispatch owns
  _pad: u32,
}

struct FinalParams {
  nPartials: u32,  // slots to sum
  maxNorm: f32,    // clipping threshold on the global norm
  _pad0: u32,
  _pad1: u32,
}

struct Clip {
  norm: f32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;

var<workgroup> red: array<f32, {{WG}}>;

// reduce sums red[0..WG) into red[0]; every invocation must call it.
fn reduce(l: u32) {
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
    if (l < s) {
      red[l] = red[l] + red[l + s];
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size({{WG}})
fn squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wid.y * p.nwg_x + wid.x;
  let nslots = (p.N + {{WG}}u * {{VPI}}u * 4u - 1u) / ({{WG}}u * {{VPI}}u * 4u);
  if (w >= nslots) {
    return; // the overshoot of a folded grid; uniform per workgroup
  }
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < {{VPI}}u; k++) {
    let v = (w * {{VPI}}u + k) * {{WG}}u + lid.x;
    let i = v * 4u;
    if (i < p.N) {
      // Elements past N (buffer padding, possibly NaN) count as zero.
      let x = select(vec4<f32>(0.0), g[v], vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(p.N));
      acc = acc + x * x;
    }
  }
  red[lid.x] = acc.x + acc.y + acc.z + acc.w;
  reduce(lid.x);
  if (lid.x == 0u) {
    partials[p.slot + w] = red[0];
  }
}

@group(0) @binding(0) var<uniform> fp: FinalParams;
@group(0) @binding(1) var<storage, read_write> clip: Clip;
@group(0) @binding(2) var<storage, read> parts: array<f32>;

// finite is false for NaN and +-Inf. It tests the exponent bits, because a
// compiler may assume floats are finite and fold x != x away.
fn finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// finalize runs as one workgroup; each invocation sums every WG-th partial,
// at most ceil(nPartials / WG) iterations (the launcher bounds nPartials).
@compute @workgroup_size({{WG}})
fn finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var i = lid.x; i < fp.nPartials; i += {{WG}}u) {
    acc = acc + parts[i];
  }
  red[lid.x] = acc;
  reduce(lid.x);
  if (lid.x == 0u) {
    let norm = sqrt(red[0]);
    clip.norm = norm;
    clip.scale = select(0.0, min(1.0, fp.maxNorm / (norm + 1e-6)), finite(norm));
  }
}
