package shaders

import (
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
)

// residualTol: one fp32 add and multiply per element, so a couple of ulps.
var residualTol = tol.Tol{Atol: 1e-6, Rtol: 1e-6}

// hostileLens crosses the vec4 tail, the workgroup size and a multiple of it.
var hostileLens = []int{1, 3, 4, 5, 255, 1021, 1024, 4097}

func randVec(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((rng.Float64()*2 - 1) * scale)
	}
	return out
}

func TestResidualAdd(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range hostileLens {
		a, b := randVec(rng, n, 3), randVec(rng, n, 3)
		out := gputest.Output(t, d, "out", n, 0)
		ga, gb := gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b)
		gputest.Run(t, d, func(r *gpu.Recorder) error { return AddScaled(r, out, ga, gb, n, -0.5) })
		tol.Check(t, "add", gputest.Read(t, out, n), ref.AddScaled(tol.F64(a), tol.F64(b), -0.5), residualTol)
		gputest.CheckPadding(t, out, n)
	}
}

func TestAccumulate(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range hostileLens {
		acc, x := randVec(rng, n, 3), randVec(rng, n, 3)
		gacc := gputest.Output(t, d, "acc", n, 0)
		if err := gacc.WriteF32(0, acc); err != nil {
			t.Fatal(err)
		}
		gx := gputest.Upload(t, d, "x", x)
		gputest.Run(t, d, func(r *gpu.Recorder) error { return Accumulate(r, gacc, gx, n, 2) })
		tol.Check(t, "accumulate", gputest.Read(t, gacc, n), ref.AddScaled(tol.F64(acc), tol.F64(x), 2), residualTol)
		gputest.CheckPadding(t, gacc, n)
	}
}
