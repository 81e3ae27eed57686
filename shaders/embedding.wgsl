// Token embedding (llm.c encoder_forward/backward without the positions:
// LLaMA uses RoPE). Forward: out (N, C) = wte[tokens[n], :]. Backward:
// dwte (V, C) += sum of the dout rows whose token is v, scattered by
// ownership (no float atomics): each invocation owns one element of dwte
// and walks the host-built CSR list of the rows that hold its token.
//
// wte and dwte may be bound as a window of vocabulary rows [v0, v1) when
// the whole tensor exceeds one storage binding; woff is the element offset
// of row v0 inside the bound window (the window starts at an aligned byte
// offset at or before row v0).

struct Params {
  N: u32,
  C: u32,
  V: u32,
  nwg_x: u32,    // workgroups along x of the folded grid
  v0: u32,       // first vocabulary row of the bound window
  v1: u32,       // one past the last row of the window
  woff: u32,     // element offset of row v0 in the window
  zero_oov: u32, // forward: 1 if this dispatch writes zeros for tokens >= V
  k0: u32,       // backward: first list entry of this pass, per row
  k1: u32,       // backward: one past the last list entry of this pass
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;

// forward: one invocation per element i = n*C + c of out. A token outside
// the vocabulary gives zeros (written by the dispatch with zero_oov set),
// never a read or write out of bounds.
@compute @workgroup_size({{WG}})
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * p.nwg_x + wid.x) * {{WG}}u + lid.x;
  if (i >= p.N * p.C) {
    return;
  }
  let n = i / p.C;
  let c = i - n * p.C;
  let v = tokens[n];
  if (v >= p.V) {
    if (p.zero_oov == 1u) {
      out[i] = 0.0;
    }
    return;
  }
  if (v < p.v0 || v >= p.v1) {
    return;
  }
  out[i] = wte[p.woff + (v - p.v0) * p.C + c];
}

@group(0) @binding(1) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;

// backward: one workgroup per (vocabulary row v of the window, block of WG
// columns); invocation c owns dwte[v, c] and adds dout[n, c] for the list
// entries [k0, k1) of row v, positions[offsets[v] + k] = n in increasing n,
// starting from the value already in dwte. The loop runs at most k1 - k0
// times (the launcher keeps that under lavapipe's 65,535-iteration limit
// and runs further passes for longer lists), so the summation order is
// dwte + dout[n_0] + dout[n_1] + ..., deterministic.
@compute @workgroup_size({{WG}})
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = wid.y * p.nwg_x + wid.x;
  let blocks = (p.C + {{WG}}u - 1u) / {{WG}}u;
  let vr = g / blocks;
  let v = p.v0 + vr;
  let c = (g - vr * blocks) * {{WG}}u + lid.x;
  if (v >= p.v1 || c >= p.C) {
    return;
  }
  let start = offsets[v];
  let end = offsets[v + 1u];
  let lo = start + p.k0;
  let hi = min(end, start + p.k1);
  if (lo >= hi) {
    return;
  }
  let at = p.woff + vr * p.C + c;
  var acc = dwte[at];
  for (var j = lo; j < hi; j++) {
    acc += dout[positions[j] * p.C + c];
  }
  dwte[at] = acc;
}
