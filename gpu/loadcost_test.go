package gpu_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
)

// loadCostSrc returns a kernel whose invocations each run iters loop trips
// of nLoads vec4 loads (expression load, IDX replaced by the load's index)
// followed by 64 vec4 FMAs into 8 accumulators that use them: the cost of a
// load is the time over the no-load variant, divided by the loads.
func loadCostSrc(load string, nLoads int) string {
	var b strings.Builder
	b.WriteString(`
struct U { n: u32, a: u32, b: u32, c: u32, d: array<vec4<f32>, 1024> }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sb: array<vec4<f32>>;
@group(0) @binding(3) var tx: texture_2d<f32>;
`)
	if readsStorageTexture(load) {
		b.WriteString("@group(0) @binding(4) var sx: texture_storage_2d<rgba32float, read>;\n")
	}
	b.WriteString(`
@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let x = vec4<f32>(f32(gid.x) * 1e-3);
`)
	for j := 0; j < 8; j++ {
		fmt.Fprintf(&b, "  var a%d = vec4<f32>(0.0);\n", j)
	}
	b.WriteString("  for (var i = 0u; i < u.n; i += 16u) {\n")
	for j := 0; j < nLoads; j++ {
		fmt.Fprintf(&b, "    let l%d = %s;\n", j, strings.ReplaceAll(load, "IDX", fmt.Sprintf("((i + %du) & 1023u)", j)))
	}
	for j := 0; j < 64; j++ {
		src := "x"
		if nLoads > 0 {
			src = fmt.Sprintf("l%d", j%nLoads)
		}
		fmt.Fprintf(&b, "    a%d = fma(a%d, %s, x);\n", j%8, j%8, src)
	}
	b.WriteString("  }\n  out[gid.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;\n}\n")
	return b.String()
}

// BenchmarkLoadCost measures what one vec4 load costs on this device next
// to vec4 FMAs, by where it reads from: a storage buffer, a uniform buffer
// a texture or a read-only storage texture, with per-lane (divergent) or
// workgroup-uniform addresses.
// It reports ns per SIMD loop trip (8 invocations, 16 loads, 64 FMAs, wall
// time over all cores). On lavapipe (docs/PLATFORM.md) every kind of load
// costs several FMAs, which is what sizes the matmul and attention tiles.
//
//	go test ./gpu -run XXX -bench LoadCost
func BenchmarkLoadCost(b *testing.B) {
	d := gputest.Device(b)
	const inv, iters = 512, 16384
	out, err := d.NewBuffer("out", gpu.CatScratch, inv*16)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Release()
	sb, err := d.NewBuffer("sb", gpu.CatScratch, 1024*16)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Release()
	tx, err := d.NewTexture("tx", gpu.CatScratch, 1024, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Release()
	sx, err := d.NewTexture("sx", gpu.CatScratch, 1024, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer sx.Release()
	fields := []any{uint32(iters), uint32(0), uint32(0), uint32(0)}
	for i := 0; i < 4096; i++ {
		fields = append(fields, float32(i%7)*0.01)
	}
	params := gpu.Params(fields...)
	const divergent = "(IDX + li * 37u) & 1023u"
	for _, v := range []struct{ name, load string }{
		{"none", ""},
		{"storage", "sb[" + divergent + "]"},
		{"storage-uniform", "sb[IDX]"},
		{"uniform-buffer", "u.d[" + divergent + "]"},
		{"uniform-buffer-uniform", "u.d[IDX]"},
		{"texture", "textureLoad(tx, vec2<i32>(i32(" + divergent + "), 0), 0)"},
		{"storage-texture", "textureLoad(sx, vec2<i32>(i32(" + divergent + "), 0))"},
	} {
		b.Run(v.name, func(b *testing.B) {
			kinds := []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindTexture}
			args := []gpu.Arg{out.Arg(), sb.Arg(), tx.Arg()}
			if readsStorageTexture(v.load) {
				if !d.StorageTextureRead {
					b.Skip("no read-only storage textures on this device")
				}
				kinds, args = append(kinds, gpu.BindStorageTextureRead), append(args, sx.Arg())
			}
			n := 16
			if v.load == "" {
				n = 0
			}
			p, err := d.Pipeline(gpu.Kernel{Name: "loadcost/" + v.name, Source: loadCostSrc(v.load, n), Entry: "main",
				Bindings: kinds})
			if err != nil {
				b.Fatal(err)
			}
			run := func() {
				r := d.NewRecorder()
				if err := r.Dispatch(p, gpu.Grid{X: inv / 8, Y: 1, Z: 1}, 0, params, args...); err != nil {
					b.Fatal(err)
				}
				if err := r.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			run()
			b.ResetTimer()
			for range b.N {
				run()
			}
			trips := float64(b.N) * inv / 8 * iters / 16
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/trips, "ns/trip")
		})
	}
}

// readsStorageTexture says whether a load expression of the LoadCost
// benchmark reads the read-only storage texture sx.
func readsStorageTexture(load string) bool { return strings.Contains(load, "sx") }
