// Packing for the texture-fed matmul path (matmul_tex.wgsl): texel (x, y) of
// dst receives the four elements src[base + y*sy + (4x+j)*sx], j = 0..3, of a
// (rows, cols) block of an operand, and zeros outside the block, so the tiled
// kernel reads a zero-padded block with no bounds checks.
//
// The source is read as vec4: on lavapipe every storage-buffer load is a
// per-lane loop with bounds checks (WEBGPU.md), so one vec4 load per texel
// instead of four scalar ones is most of the packing cost. For the same
// reason the kernel has no divergent branches around its loads: indices are
// clamped into the block and the values outside it replaced by zeros with
// select. Each invocation writes texel column x of the four rows 4q..4q+3,
// which lets the transposed case read four vec4 columns and transpose them.
// {{MODE}} (fixed per pipeline, so the compiler drops the other cases):
// 0: rows contiguous (sx = 1; base and sy multiples of 4);
// 1: columns contiguous (sy = 1; base and sx multiples of 4);
// 2: anything else, sixteen scalar reads (src[i/4][i%4]).

const MODE = {{MODE}}u;

struct PackParams {
  base: u32,
  sy: u32,    // element stride between rows of the block
  sx: u32,    // element stride between columns of the block
  rows: u32,  // rows of the block (texels beyond are zero)
  cols: u32,  // columns of the block (elements beyond are zero)
  w: u32,     // texels to write along x
  h: u32,     // texels to write along y (a multiple of 4)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> pk: PackParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(8, 8)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>) {
  let x = gid.x;
  let y0 = gid.y * 4u;
  if (x >= pk.w || y0 >= pk.h) {
    return;
  }
  let zero = vec4<f32>(0.0);
  let c = vec4<u32>(4u * x) + vec4<u32>(0u, 1u, 2u, 3u);   // columns of texel x
  let r = vec4<u32>(y0) + vec4<u32>(0u, 1u, 2u, 3u);       // rows 4q..4q+3
  let colOk = c < vec4<u32>(pk.cols);
  let rowOk = r < vec4<u32>(pk.rows);
  let cc = min(c, vec4<u32>(pk.cols - 1u)); // clamped into the block
  let rc = min(r, vec4<u32>(pk.rows - 1u));
  var t0: vec4<f32>;
  var t1: vec4<f32>;
  var t2: vec4<f32>;
  var t3: vec4<f32>;
  if (MODE == 0u) {
    // Texel (x, row) is vec4 (base + row*sy)/4 + x; x is clamped to the
    // block's last texel.
    let xc = cc.x / 4u;
    t0 = select(zero, src[(pk.base + rc.x * pk.sy) / 4u + xc], colOk & vec4<bool>(rowOk.x));
    t1 = select(zero, src[(pk.base + rc.y * pk.sy) / 4u + xc], colOk & vec4<bool>(rowOk.y));
    t2 = select(zero, src[(pk.base + rc.z * pk.sy) / 4u + xc], colOk & vec4<bool>(rowOk.z));
    t3 = select(zero, src[(pk.base + rc.w * pk.sy) / 4u + xc], colOk & vec4<bool>(rowOk.w));
  } else if (MODE == 1u) {
    // Column 4x+j's rows 4q..4q+3 are vec4 (base + col*sx)/4 + q; transpose.
    let q = rc.x / 4u;
    let v0 = select(zero, src[(pk.base + cc.x * pk.sx) / 4u + q], rowOk & vec4<bool>(colOk.x));
    let v1 = select(zero, src[(pk.base + cc.y * pk.sx) / 4u + q], rowOk & vec4<bool>(colOk.y));
    let v2 = select(zero, src[(pk.base + cc.z * pk.sx) / 4u + q], rowOk & vec4<bool>(colOk.z));
    let v3 = select(zero, src[(pk.base + cc.w * pk.sx) / 4u + q], rowOk & vec4<bool>(colOk.w));
    t0 = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
    t1 = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
    t2 = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
    t3 = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
  } else {
    t0 = select(zero, scalar_row(rc.x, cc), colOk & vec4<bool>(rowOk.x));
    t1 = select(zero, scalar_row(rc.y, cc), colOk & vec4<bool>(rowOk.y));
    t2 = select(zero, scalar_row(rc.z, cc), colOk & vec4<bool>(rowOk.z));
    t3 = select(zero, scalar_row(rc.w, cc), colOk & vec4<bool>(rowOk.w));
  }
  textureStore(dst, vec2<i32>(i32(x), i32(y0)), t0);
  textureStore(dst, vec2<i32>(i32(x), i32(y0 + 1u)), t1);
  textureStore(dst, vec2<i32>(i32(x), i32(y0 + 2u)), t2);
  textureStore(dst, vec2<i32>(i32(x), i32(y0 + 3u)), t3);
}

// scalar_row reads the elements (row, cols[j]) of the block one by one.
fn scalar_row(row: u32, cols: vec4<u32>) -> vec4<f32> {
  let i = vec4<u32>(pk.base + row * pk.sy) + cols * pk.sx;
  return vec4<f32>(src[i.x / 4u][i.x % 4u], src[i.y / 4u][i.y % 4u], src[i.z / 4u][i.z % 4u], src[i.w / 4u][i.w % 4u]);
}
