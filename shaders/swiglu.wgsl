// SwiGLU, elementwise over n = N*H values, given the two FFN projections
// a = x·W1ᵀ and b = x·W3ᵀ:
//   forward:  h = silu(a) * b,  silu(a) = a * sigmoid(a)
//   backward: da = dh * b * s * (1 + a*(1 - s)),  db = dh * silu(a),  s = sigmoid(a)
// Each invocation handles one vec4. Buffers are bound whole and padded to
// 16 bytes (gpu.Align), so the last vec4 may be read entirely; it is written
// back with the elements at or past n unchanged.

struct Params {
  n: u32,      // number of float elements
  nwg_x: u32,  // workgroups along x of the folded grid
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn lin(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
}

// sigmoid is 1/(1+exp(-a)) without overflow: exp only ever sees -|a|, so
// a = +-300 gives exactly 1 or a tiny e/(1+e), never Inf or NaN.
fn sigmoid(a: vec4<f32>) -> vec4<f32> {
  let e = exp(-abs(a));
  let inv = 1.0 / (1.0 + e);
  return select(e * inv, inv, a >= vec4<f32>(0.0));
}

// live marks the lanes of vec4 v that hold elements below n.
fn live(v: u32) -> vec4<bool> {
  let i = v * 4u;
  return vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(p.n);
}

@group(0) @binding(1) var<storage, read_write> h: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let v = lin(wid, lid);
  if (v * 4u >= p.n) {
    return;
  }
  let av = a[v];
  let r = av * sigmoid(av) * b[v];
  if (v * 4u + 3u < p.n) {
    h[v] = r;
  } else {
    h[v] = select(h[v], r, live(v));
  }
}

@group(0) @binding(1) var<storage, read_write> da: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> db: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dh: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let v = lin(wid, lid);
  if (v * 4u >= p.n) {
    return;
  }
  let av = a[v];
  let g = dh[v];
  // s = sigmoid(a) and 1 - s = sigmoid(-a) from the same exp(-|a|), so
  // 1 - s keeps its precision for large positive a.
  let e = exp(-abs(av));
  let inv = 1.0 / (1.0 + e);
  let pos = av >= vec4<f32>(0.0);
  let s = select(e * inv, inv, pos);
  let ms = select(inv, e * inv, pos);
  let ra = g * b[v] * s * (1.0 + av * ms);
  let rb = g * av * s;
  if (v * 4u + 3u < p.n) {
    da[v] = ra;
    db[v] = rb;
  } else {
    let m = live(v);
    da[v] = select(da[v], ra, m);
    db[v] = select(db[v], rb, m);
  }
}
