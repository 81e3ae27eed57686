package gpu_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/stretchr/testify/require"
)

// TestRoundTripLarge uploads and downloads a tensor larger than one chunk,
// so the chunked write and read paths both cross chunk boundaries.
func TestRoundTripLarge(t *testing.T) {
	d := gputest.Device(t)
	n := gpu.ChunkBytes/4*2 + 12345
	data := make([]float32, n)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = rng.Float32()
	}
	before := d.Ledger.Current(gpu.CatScratch)
	b := gputest.Upload(t, d, "big", data)
	require.Equal(t, before+b.Size, d.Ledger.Current(gpu.CatScratch), "ledger counts the allocation")
	got, err := b.ReadF32(0, n)
	require.NoError(t, err)
	require.Equal(t, data, got)
	part, err := b.ReadF32(n-5, 5)
	require.NoError(t, err)
	require.Equal(t, data[n-5:], part)
}

func TestLedgerRelease(t *testing.T) {
	d := gputest.Device(t)
	before := d.Ledger.Current(gpu.CatActivations)
	b, err := d.NewBuffer("act", gpu.CatActivations, 1001)
	require.NoError(t, err)
	require.Equal(t, uint64(1008), b.Size, "sizes round up to 16 bytes")
	require.Equal(t, before+1008, d.Ledger.Current(gpu.CatActivations))
	b.Release()
	require.Equal(t, before, d.Ledger.Current(gpu.CatActivations))
	require.Panics(t, b.Release)
}

func TestBufferTooLarge(t *testing.T) {
	d := gputest.Device(t)
	_, err := d.NewBuffer("huge.tensor", gpu.CatParams, d.Limits.MaxBufferSize+16)
	require.ErrorContains(t, err, "huge.tensor")
	require.ErrorContains(t, err, "maxBufferSize")
}

func TestReadOutOfRange(t *testing.T) {
	d := gputest.Device(t)
	b := gputest.Upload(t, d, "small", []float32{1, 2, 3})
	_, err := b.ReadF32(2, 10)
	require.ErrorContains(t, err, "small")
}

// TestRecorderSplitsSubmissions checks that work beyond the budget is split
// into several submissions and still executes every dispatch in order.
func TestRecorderSplitsSubmissions(t *testing.T) {
	d := gputest.Device(t)
	k := gpu.Kernel{Name: "test/inc", Entry: "main", Bindings: []gpu.BindKind{gpu.BindReadWrite}, Source: `
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(1) fn main() { x[0] = x[0] + 1.0; }`}
	p, err := d.Pipeline(k)
	require.NoError(t, err)
	x := gputest.Upload(t, d, "counter", []float32{0})
	saved := d.SubmitBudget
	d.SubmitBudget = 10
	defer func() { d.SubmitBudget = saved }()
	r := d.NewRecorder()
	for range 7 {
		require.NoError(t, r.Dispatch(p, gpu.Grid{X: 1, Y: 1, Z: 1}, 4, nil, x.Arg()))
	}
	require.NoError(t, r.Flush())
	require.Equal(t, 4, r.Submissions, "budget 10 with work 4 fits two dispatches per submission")
	got, err := x.ReadF32(0, 1)
	require.NoError(t, err)
	require.Equal(t, float32(7), got[0])
}

func TestDispatchErrorsNameKernel(t *testing.T) {
	d := gputest.Device(t)
	k := gpu.Kernel{Name: "test/two", Entry: "main", Bindings: []gpu.BindKind{gpu.BindRead, gpu.BindReadWrite}, Source: `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(1) fn main() { b[0] = a[0]; }`}
	p, err := d.Pipeline(k)
	require.NoError(t, err)
	x := gputest.Upload(t, d, "x", []float32{1})
	r := d.NewRecorder()
	err = r.Dispatch(p, gpu.Grid{X: 1, Y: 1, Z: 1}, 1, nil, x.Arg())
	require.ErrorContains(t, err, "test/two")
	err = r.Dispatch(p, gpu.Grid{X: 0, Y: 1, Z: 1}, 1, nil, x.Arg(), x.Arg())
	require.ErrorContains(t, err, "test/two")
	bad := gpu.Kernel{Name: "test/bad", Entry: "main", Source: `fn main( {`}
	_, err = d.Pipeline(bad)
	require.ErrorContains(t, err, "test/bad")
	require.NoError(t, r.Flush())
}

// TestSubmissionOverFiveSeconds runs one submission longer than wgpu's 5 s
// blocking-poll limit (WEBGPU.md trap 1: the limit crashed lavapipe's queue
// thread when step-gpu waited with a blocking poll). The device waits with
// non-blocking polls, so the submission must complete and its result be
// right. The work is calibrated from a short run to last about 6 s; on a GPU
// that would take too much work to reach, so the test runs on CPU adapters.
func TestSubmissionOverFiveSeconds(t *testing.T) {
	d := gputest.Device(t)
	if !d.IsCPU() {
		t.Skip("a GPU finishes any reasonable test kernel long before 5 s")
	}
	k := gpu.Kernel{Name: "test/spin", Entry: "main", Bindings: []gpu.BindKind{gpu.BindReadWrite}, Source: `
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>,
                                     @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = 0.0;
  for (var i = 0u; i < 20000u; i++) { acc = fma(acc, 0.999999, 1e-6); }
  if (acc == 12345.0) { x[1] = acc; }
  if (id.x == 0u && id.y == 0u) { x[0] = x[0] + 1.0; }
}`}
	p, err := d.Pipeline(k)
	require.NoError(t, err)
	x := gputest.Upload(t, d, "counter", []float32{0, 0})
	saved := d.SubmitBudget
	d.SubmitBudget = 1e18
	defer func() { d.SubmitBudget = saved }()
	run := func(groups uint32) time.Duration {
		r := d.NewRecorder()
		start := time.Now()
		require.NoError(t, r.Dispatch(p, gpu.Grid{X: min(groups, 65535), Y: (groups + 65534) / 65535, Z: 1}, 0, nil, x.Arg()))
		require.NoError(t, r.Flush())
		return time.Since(start)
	}
	run(64) // compile
	probe := run(2048)
	groups := uint32(min(float64(2048)*7/probe.Seconds(), 1<<30))
	if groups < 2048 {
		groups = 2048
	}
	// The machine's load can change between calibration and run (other
	// processes share the cores): rescale and retry, at most twice, when
	// the submission came out shorter than the limit.
	var el time.Duration
	runs := 2
	for try := 0; try < 3; try++ {
		el = run(groups)
		runs++
		t.Logf("one submission of %d workgroups took %v", groups, el)
		if el > 5*time.Second {
			break
		}
		groups = uint32(min(float64(groups)*7/el.Seconds(), 1<<30))
	}
	require.Greater(t, el, 5*time.Second, "the calibrated submission must exceed the 5 s limit to test it")
	got, err := x.ReadF32(0, 1)
	require.NoError(t, err)
	require.Equal(t, float32(runs), got[0], "every dispatch ran")
}
