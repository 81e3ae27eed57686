// AdamW update of one parameter tensor in place (PyTorch's AdamW):
//   g    = clip.scale * grad
//   m    = beta1*m + (1-beta1)*g
//   v    = beta2*v + (1-beta2)*g*g
//   mhat = m * ibc1,  ibc1 = 1/(1-beta1^t)
//   vhat = v * ibc2,  ibc2 = 1/(1-beta2^t)
//   p    = p - lr*(mhat/(sqrt(vhat)+eps) + wd*p)
// wd is hyper.wd for tensors with decay (matrices) and 0 otherwise; the
// decay term uses p from before the step (PyTorch: p *= 1-lr*wd, then the
// Adam step). Values that change every step live in the storage buffer
// hyper, written by the host once per step, so the uniform below (and the
// cached bind group) stays the same from step to step. A non-finite global
// norm (clip.norm) skips the update: nothing is written.
//
// Each invocation updates VPI vec4s strided by WG (loads coalesce); the
// tail vec4 writes back the elements at or past N unchanged.

struct Params {
  N: u32,      // elements of this tensor (or binding chunk of it)
  nwg_x: u32,  // workgroups along x of the folded grid
  decay: u32,  // 1: apply weight decay, 0: not
  _pad: u32,
}

struct Hyper {
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  wd: f32,
  ibc1: f32,  // 1/(1-beta1^t), computed in float64 on the host
  ibc2: f32,  // 1/(1-beta2^t)
  _pad: f32,
}

struct Clip {
  norm: f32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> hyper: Hyper;
@group(0) @binding(6) var<storage, read> clip: Clip;

// finite is false for NaN and +-Inf. It tests the exponent bits, because a
// compiler may assume floats are finite and fold x != x away.
fn finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size({{WG}})
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  if (!finite(clip.norm)) {
    return;
  }
  let w = wid.y * p.nwg_x + wid.x;
  let h = hyper;
  let s = clip.scale;
  let wd = select(0.0, h.wd, p.decay != 0u);
  for (var k = 0u; k < {{VPI}}u; k++) {
    let j = (w * {{VPI}}u + k) * {{WG}}u + lid.x;
    let i = j * 4u;
    if (i >= p.N) {
      break; // later k only go further; also the folded grid's overshoot
    }
    let keep = vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(p.N);
    let g = s * grad[j];
    let p0 = param[j];
    let m0 = m[j];
    let v0 = v[j];
    let m1 = h.beta1 * m0 + (1.0 - h.beta1) * g;
    let v1 = h.beta2 * v0 + (1.0 - h.beta2) * g * g;
    let mhat = m1 * h.ibc1;
    let vhat = v1 * h.ibc2;
    let p1 = p0 - h.lr * (mhat / (sqrt(vhat) + h.eps) + wd * p0);
    param[j] = select(p0, p1, keep);
    m[j] = select(m0, m1, keep);
    v[j] = select(v0, v1, keep);
  }
}
