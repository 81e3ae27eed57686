// Matrix multiply from storage buffers: out (+)= op(A) · op(B) over one block
// of the product (the launcher splits large products into blocks of rows,
// columns and K so that every dispatch is short and every invocation's loop
// stays far below lavapipe's 65,535-iteration limiter).
//
// Element (m, k) of op(A) is a[a_base + m*a_sm + k*a_sk] and element (k, n) of
// op(B) is b[b_base + k*b_sk + n*b_sn]; the strides encode the layout (NN, NT
// or TN). Block coordinates m, n, k start at 0: the bases already point at
// the block's first element.

struct Params {
  M: u32,      // rows of this block of out
  N: u32,      // columns of this block of out
  K: u32,      // length of this block's K range
  acc: u32,    // 1: out += product, 0: out = product
  a_base: u32,
  a_sm: u32,
  a_sk: u32,
  b_base: u32,
  b_sk: u32,
  b_sn: u32,
  o_base: u32, // out element (m, n) is out[o_base + m*o_sm + n]
  o_sm: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// store_row writes four consecutive outputs of row r from column c, skipping
// those outside the block.
fn store_row(r: u32, c: u32, v: vec4<f32>) {
  if (r >= p.M) {
    return;
  }
  let o = p.o_base + r * p.o_sm + c;
  for (var j = 0u; j < 4u; j++) {
    if (c + j < p.N) {
      if (p.acc != 0u) {
        out[o + j] = out[o + j] + v[j];
      } else {
        out[o + j] = v[j];
      }
    }
  }
}

// simple: each invocation computes a 4x4 register tile of out; a workgroup
// of 8x8 invocations covers 32x32. Rows and columns past the block's edge
// are clamped for loading (their results are discarded by store_row), so no
// load leaves the block. One loop of K iterations per invocation.
@compute @workgroup_size(8, 8)
fn simple(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.y * 4u;
  let c = gid.x * 4u;
  if (r >= p.M || c >= p.N) {
    return;
  }
  let ra = min(vec4<u32>(r, r + 1u, r + 2u, r + 3u), vec4<u32>(p.M - 1u)) * p.a_sm + p.a_base;
  let cb = min(vec4<u32>(c, c + 1u, c + 2u, c + 3u), vec4<u32>(p.N - 1u)) * p.b_sn + p.b_base;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let ka = k * p.a_sk;
    let kb = k * p.b_sk;
    let bv = vec4<f32>(b[cb.x + kb], b[cb.y + kb], b[cb.z + kb], b[cb.w + kb]);
    acc0 = fma(vec4<f32>(a[ra.x + ka]), bv, acc0);
    acc1 = fma(vec4<f32>(a[ra.y + ka]), bv, acc1);
    acc2 = fma(vec4<f32>(a[ra.z + ka]), bv, acc2);
    acc3 = fma(vec4<f32>(a[ra.w + ka]), bv, acc3);
  }
  store_row(r, c, acc0);
  store_row(r + 1u, c, acc1);
  store_row(r + 2u, c, acc2);
  store_row(r + 3u, c, acc3);
}
