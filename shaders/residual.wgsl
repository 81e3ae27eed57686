// Residual stream kernels: out = a + b (forward) and acc += x (the
// backward of a residual branch, and gradient accumulation). Each
// invocation handles one vec4; the tail that does not fill a vec4 is
// handled elementwise so no byte past N is written.

struct Params {
  N: u32,      // number of float elements
  nwg_x: u32,  // workgroups along x of the folded grid
  scale: f32,  // multiplier of the second operand
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn lin(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
}

// add: out[i] = a[i] + scale * b[i]
@compute @workgroup_size({{WG}})
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = lin(wid, lid) * 4u;
  if (i + 3u < p.N) {
    out[i] = a[i] + p.scale * b[i];
    out[i + 1u] = a[i + 1u] + p.scale * b[i + 1u];
    out[i + 2u] = a[i + 2u] + p.scale * b[i + 2u];
    out[i + 3u] = a[i + 3u] + p.scale * b[i + 3u];
  } else {
    for (var j = i; j < p.N; j++) {
      out[j] = a[j] + p.scale * b[j];
    }
  }
}

@group(0) @binding(1) var<storage, read_write> acc: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

// accumulate: acc[i] += scale * x[i]. Buffers are padded to 16 bytes
// (gpu.Align), so whole vec4s may be read; the tail vec4 only updates
// elements below N.
@compute @workgroup_size({{WG}})
fn accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let v = lin(wid, lid);
  let i = v * 4u;
  if (i + 3u < p.N) {
    acc[v] = acc[v] + p.scale * x[v];
  } else if (i < p.N) {
    var r = acc[v];
    let s = x[v];
    for (var j = 0u; j < p.N - i; j++) {
      r[j] = r[j] + p.scale * s[j];
    }
    acc[v] = r;
  }
}
