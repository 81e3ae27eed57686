package gpu

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// openTest opens the default adapter for this package's internal tests
// (gputest cannot be imported here), skipping or, with STEP_GPU_REQUIRE=1,
// failing without one.
func openTest(t *testing.T) *Device {
	t.Helper()
	d, err := Open(Options{})
	if err != nil {
		if os.Getenv("STEP_GPU_REQUIRE") == "1" {
			t.Fatal(err)
		}
		t.Skipf("no WebGPU adapter: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestProbeStorageTextureRead runs the start-up probe again on a device
// that passed it and checks it leaves nothing allocated. lavapipe offers
// the feature and passes, so CI checks it there.
func TestProbeStorageTextureRead(t *testing.T) {
	d := openTest(t)
	if d.IsCPU() {
		require.True(t, d.StorageTextureRead, "lavapipe reads rgba32float storage textures: %s", d.StorageTextureNote)
	}
	if !d.StorageTextureRead {
		t.Skipf("%s: %s", d.Info.Name, d.StorageTextureNote)
	}
	before := d.Ledger.Total()
	require.NoError(t, d.probeStorageTextureRead())
	require.Equal(t, before, d.Ledger.Total())
}

// TestProbeStorageTextureFails opens a device whose probe kernel reads the
// wrong texel, as a backend that binds the texture but reads it wrongly
// would, and checks that storage textures are then off, with the reason.
func TestProbeStorageTextureFails(t *testing.T) {
	old := storageTexProbe
	t.Cleanup(func() { storageTexProbe = old })
	storageTexProbe.Name = "gpu/storage-texture-probe-wrong"
	storageTexProbe.Source = `
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(1) var t: texture_storage_2d<rgba32float, read>;
@compute @workgroup_size(1)
fn main() {
  out[0] = textureLoad(t, vec2<i32>(0, 0)) * 2.0;
}`
	d := openTest(t)
	if d.StorageTextureNote == "it lacks the native feature texture-adapter-specific-format-features" {
		t.Skip(d.StorageTextureNote)
	}
	require.False(t, d.StorageTextureRead)
	require.Contains(t, d.StorageTextureNote, "its probe kernel failed: read back [3 -4.5")
	require.Zero(t, d.Ledger.TotalPeak(), "the probe's allocations are not a run's memory")
}

// TestRecorderDiscard records a clear and a dispatch, discards them, and
// checks that neither ran, that the dispatch count is restored and that
// the recorder still works.
func TestRecorderDiscard(t *testing.T) {
	d := openTest(t)
	b, err := d.NewBufferF32("b", CatScratch, []float32{1, 2, 3, 4})
	require.NoError(t, err)
	defer b.Release()
	p, err := d.Pipeline(Kernel{Name: "test/add-one", Entry: "main", Bindings: []BindKind{BindReadWrite}, Source: `
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(4)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  x[g.x] += 1.0;
}`})
	require.NoError(t, err)
	r := d.NewRecorder()
	// The first dispatch of a pipeline runs alone (its compile); this one
	// is submitted, the next two are discarded.
	require.NoError(t, r.Dispatch(p, Grid{1, 1, 1}, 1, nil, b.Arg()))
	require.NoError(t, r.Dispatch(p, Grid{1, 1, 1}, 1, nil, b.Arg()))
	require.NoError(t, r.Clear(b, 0, 16))
	require.Equal(t, 2, r.Dispatches)
	r.Discard()
	require.Equal(t, 1, r.Dispatches)
	require.NoError(t, r.Flush())
	got, err := b.ReadF32(0, 4)
	require.NoError(t, err)
	require.Equal(t, []float32{2, 3, 4, 5}, got)
	require.NoError(t, r.Dispatch(p, Grid{1, 1, 1}, 1, nil, b.Arg()))
	require.NoError(t, r.Flush())
	got, err = b.ReadF32(0, 4)
	require.NoError(t, err)
	require.Equal(t, []float32{3, 4, 5, 6}, got)
}
