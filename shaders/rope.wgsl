// Rotary position embeddings, rotate-half convention (Hugging Face LLaMA),
// on x (B, T, NH*HS): within each head, x1 = x[i] and x2 = x[i + HS/2]
// (i < HS/2) turn by angle = t * theta^(-2i/HS), t the row's time index:
//   x1' = x1*cos - x2*sin
//   x2' = x2*cos + x1*sin
// The backward is the inverse rotation: the same with sign = -1 (sin
// negated). Each invocation owns one pair, so the in-place entry point is
// race-free. Angles are computed here in f32 from theta; nothing comes from
// the host but the scalars below. inv_freq's f32 rounding, multiplied by t,
// dominates the error against float64: ~t * 2^-24 rad, 4e-4 on outputs of
// magnitude 1 at t = 4096 (rope_test.go), as in fp32 PyTorch.

struct Params {
  pairs: u32,  // B*T*NH*HS/2 (rotate), or that over 4 (rotate4)
  T: u32,
  NH: u32,
  HS: u32,
  nwg_x: u32,  // workgroups along x of the folded grid
  theta: f32,
  sign: f32,   // +1 forward, -1 backward
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// 2*pi split for range reduction (Cody-Waite): TWO_PI_HI has 8 significant
// bits, so k * TWO_PI_HI is exact for k < 2^16 and angle - k*TWO_PI_HI is
// exact; TWO_PI_LO is the remainder.
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 1.9353071795864769e-3;
const INV_TWO_PI: f32 = 0.15915494309189535;

// Pair is the offset of x1 and the cos/sin of its rotation.
struct Pair {
  off: u32,
  c: f32,
  s: f32,
}

// pair locates pair number q and computes its rotation. inv_freq is
// theta^(-2i/HS) = exp2(-(2i/HS) * log2(theta)); the angle is reduced to
// [-pi, pi] before cos/sin, whose accuracy WGSL only bounds in that range.
fn pair(q: u32) -> Pair {
  let half = p.HS / 2u;
  let i = q % half;
  let head = q / half;              // (b*T + t)*NH + h
  let t = (head / p.NH) % p.T;
  let inv_freq = exp2(-(f32(2u * i) / f32(p.HS)) * log2(p.theta));
  let angle = f32(t) * inv_freq;
  let k = round(angle * INV_TWO_PI);
  let red = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
  return Pair(head * p.HS + i, cos(red), p.sign * sin(red));
}

fn lin(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

// rotate: out = rope(x), out-of-place.
@compute @workgroup_size({{WG}})
fn rotate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let q = lin(wid, lid);
  if (q >= p.pairs) {
    return;
  }
  let r = pair(q);
  let j = r.off + p.HS / 2u;
  let x1 = x[r.off];
  let x2 = x[j];
  out[r.off] = x1 * r.c - x2 * r.s;
  out[j] = x2 * r.c + x1 * r.s;
}

@group(0) @binding(1) var<storage, read_write> io: array<f32>;

// rotate_inplace: io = rope(io).
@compute @workgroup_size({{WG}})
fn rotate_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let q = lin(wid, lid);
  if (q >= p.pairs) {
    return;
  }
  let r = pair(q);
  let j = r.off + p.HS / 2u;
  let x1 = io[r.off];
  let x2 = io[j];
  io[r.off] = x1 * r.c - x2 * r.s;
  io[j] = x2 * r.c + x1 * r.s;
}

// ---- rotate4 and rotate_inplace4: the same for HS % 8 == 0, four
// consecutive pairs per invocation (i = 4*q4 .. 4*q4+3 of one head), read
// and written as vec4s: x1 and x2 of the four pairs are 16-byte aligned
// because HS/2 is a multiple of 4. p.pairs counts these groups of four.

struct Pair4 {
  off: u32,  // vec4 index of x1
  c: vec4<f32>,
  s: vec4<f32>,
}

fn pair4(q: u32) -> Pair4 {
  let quarter = p.HS / 8u;           // groups of four pairs per head
  let i = (q % quarter) * 4u;
  let head = q / quarter;
  let t = (head / p.NH) % p.T;
  let ii = vec4<f32>(f32(i), f32(i + 1u), f32(i + 2u), f32(i + 3u));
  let inv_freq = exp2(-(2.0 * ii / f32(p.HS)) * log2(p.theta));
  let angle = f32(t) * inv_freq;
  let k = round(angle * INV_TWO_PI);
  let red = (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
  return Pair4((head * p.HS + i) / 4u, cos(red), p.sign * sin(red));
}

@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn rotate4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let q = lin(wid, lid);
  if (q >= p.pairs) {
    return;
  }
  let r = pair4(q);
  let j = r.off + p.HS / 8u;
  let x1 = x4[r.off];
  let x2 = x4[j];
  out4[r.off] = x1 * r.c - x2 * r.s;
  out4[j] = x2 * r.c + x1 * r.s;
}

@group(0) @binding(1) var<storage, read_write> io4: array<vec4<f32>>;

@compute @workgroup_size({{WG}})
fn rotate_inplace4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let q = lin(wid, lid);
  if (q >= p.pairs) {
    return;
  }
  let r = pair4(q);
  let j = r.off + p.HS / 8u;
  let x1 = io4[r.off];
  let x2 = io4[j];
  io4[r.off] = x1 * r.c - x2 * r.s;
  io4[j] = x2 * r.c + x1 * r.s;
}
