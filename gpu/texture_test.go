package gpu_test

import (
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/stretchr/testify/require"
)

// texRead copies a texture's first w x h texels into a buffer, row-major,
// through a kernel (WebGPU has no direct texture readback here).
var texRead = gpu.Kernel{Name: "test/texread", Entry: "main",
	Bindings: []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindTexture},
	Source: `
struct P { w: u32, h: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var t: texture_2d<f32>;
@compute @workgroup_size(1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  for (var y = 0u; y < p.h; y++) {
    for (var x = 0u; x < p.w; x++) {
      out[y * p.w + x] = textureLoad(t, vec2<i32>(i32(x), i32(y)), 0);
    }
  }
}`}

// TestCopyToTexture copies a 3 x 2 texel region at a 16-byte offset with a
// 256-byte row pitch and reads the texture back: the region holds the
// buffer's bytes, the rest of the (new, zeroed) texture is untouched; and
// misaligned or oversized copies fail with a message naming the copy.
func TestCopyToTexture(t *testing.T) {
	d := gputest.Device(t)
	src := make([]float32, 64*3)
	for i := range src {
		src[i] = float32(i + 1)
	}
	b := gputest.Upload(t, d, "src", src)
	tex, err := d.NewTexture("dst", gpu.CatScratch, 4, 4)
	require.NoError(t, err)
	t.Cleanup(tex.Release)
	out := gputest.Upload(t, d, "out", make([]float32, 4*4*4))
	p, err := d.Pipeline(texRead)
	require.NoError(t, err)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := r.CopyToTexture(tex, b, 16, 256, 3, 2); err != nil {
			return err
		}
		return r.Dispatch(p, gpu.Grid{X: 1, Y: 1, Z: 1}, 1, gpu.Params(uint32(4), uint32(4)), out.Arg(), tex.Arg())
	})
	got := gputest.Read(t, out, 4*4*4)
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			for c := 0; c < 4; c++ {
				want := float32(0)
				if x < 3 && y < 2 {
					want = src[4+y*64+4*x+c] // 16 bytes in, 64 floats per row
				}
				require.Equal(t, want, got[(y*4+x)*4+c], "texel (%d, %d) component %d", x, y, c)
			}
		}
	}
	r := d.NewRecorder()
	for _, c := range []struct {
		off, pitch uint64
		w, h       uint32
		msg        string
	}{
		{8, 256, 1, 1, "multiple of 16"},
		{0, 128, 1, 1, "of 256"},
		{0, 256, 5, 1, "outside the texture"},
		{0, 256, 3, 4, "reads past the buffer"},
	} {
		err := r.CopyToTexture(tex, b, c.off, c.pitch, c.w, c.h)
		require.ErrorContains(t, err, c.msg)
		require.ErrorContains(t, err, "copy src -> texture dst")
	}
	require.ErrorContains(t, r.CopyToTexture(tex, nil, 0, 256, 1, 1), "no source buffer")
}

// TestStorageTextureRead reads a copied texture through a read-only storage
// binding, texel by texel, where the device offers one (lavapipe does, so CI
// runs it); elsewhere creating such a pipeline must fail with a message
// saying why.
func TestStorageTextureRead(t *testing.T) {
	d := gputest.Device(t)
	k := gpu.Kernel{Name: "test/storage-texread", Entry: "main",
		Bindings: []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindStorageTextureRead},
		Source: `
struct P { w: u32, h: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var t: texture_storage_2d<rgba32float, read>;
@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < p.w && g.y < p.h) {
    out[g.y * p.w + g.x] = textureLoad(t, vec2<i32>(i32(g.x), i32(g.y)));
  }
}`}
	if !d.StorageTextureRead {
		require.NotEmpty(t, d.StorageTextureNote, "a device without storage textures says why")
		_, err := d.Pipeline(k)
		require.ErrorContains(t, err, "read-only storage textures are not available")
		require.ErrorContains(t, err, d.StorageTextureNote)
		return
	}
	require.Empty(t, d.StorageTextureNote)
	const w, h = 5, 3 // 5 texels do not fill a workgroup of 8
	src := make([]float32, 64*h)
	for i := range src {
		src[i] = float32(i)*0.5 - 17
	}
	b := gputest.Upload(t, d, "src", src)
	tex, err := d.NewTexture("dst", gpu.CatScratch, 8, 4)
	require.NoError(t, err)
	t.Cleanup(tex.Release)
	out := gputest.Upload(t, d, "out", make([]float32, 4*w*h))
	p, err := d.Pipeline(k)
	require.NoError(t, err)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := r.CopyToTexture(tex, b, 0, 256, w, h); err != nil {
			return err
		}
		return r.Dispatch(p, gpu.Grid{X: 1, Y: h, Z: 1}, 1, gpu.Params(uint32(w), uint32(h)), out.Arg(), tex.Arg())
	})
	got := gputest.Read(t, out, 4*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < 4*w; x++ {
			require.Equal(t, src[y*64+x], got[y*4*w+x], "texel (%d, %d) component %d", x/4, y, x%4)
		}
	}
}
