package shaders

import "github.com/step-gpu/step-gpu/gpu"

// residualWG is the workgroup size of the residual kernels: 256 invocations
// of one vec4 each, the portable maximum.
const residualWG = 256

var (
	residualSrc  = own("residual")
	residualBind = []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}
	kResidualAdd = kernel("residual", "add", residualBind, map[string]string{"WG": "256"})
	kResidualAcc = kernel("residual", "accumulate",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, map[string]string{"WG": "256"})
)

// ResidualForward records out = a + b over n elements.
func ResidualForward(r *gpu.Recorder, out, a, b *gpu.Buffer, n int) error {
	return residualAdd(r, out, a, b, n, 1)
}

// AddScaled records out = a + scale*b over n elements.
func AddScaled(r *gpu.Recorder, out, a, b *gpu.Buffer, n int, scale float32) error {
	return residualAdd(r, out, a, b, n, scale)
}

func residualAdd(r *gpu.Recorder, out, a, b *gpu.Buffer, n int, scale float32) error {
	d := r.Device()
	p, err := d.Pipeline(kResidualAdd)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+3)/4, residualWG)
	return r.Dispatch(p, g, float64(2*n), gpu.Params(uint32(n), g.X, scale, uint32(0)),
		out.Arg(), a.Arg(), b.Arg())
}

// Accumulate records acc += scale*x over n elements: the backward of a
// residual branch, and gradient accumulation across micro-batches.
func Accumulate(r *gpu.Recorder, acc, x *gpu.Buffer, n int, scale float32) error {
	d := r.Device()
	p, err := d.Pipeline(kResidualAcc)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+3)/4, residualWG)
	return r.Dispatch(p, g, float64(2*n), gpu.Params(uint32(n), g.X, scale, uint32(0)), acc.Arg(), x.Arg())
}
