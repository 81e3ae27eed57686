package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

// swigluWG is the workgroup size of the SwiGLU kernels: 256 invocations of
// one vec4 each, the portable maximum (elementwise, no barriers).
const swigluWG = 256

var (
	swigluSrc  = own("swiglu")
	swigluSubs = map[string]string{"WG": fmt.Sprint(swigluWG)}
	kSwiGLUFwd = kernel("swiglu", "forward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}, swigluSubs)
	kSwiGLUBwd = kernel("swiglu", "backward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindReadWrite, gpu.BindRead},
		swigluSubs)
)

// SwiGLUForward records h = silu(a) * b over n = N*H elements, where
// a = x·W1ᵀ and b = x·W3ᵀ and silu(a) = a*sigmoid(a).
// Shapes: h (N, H), a (N, H), b (N, H).
func SwiGLUForward(r *gpu.Recorder, h, a, b *gpu.Buffer, n int) error {
	if n <= 0 {
		return fmt.Errorf("swiglu forward: need n > 0, got %d", n)
	}
	if err := normSizes("swiglu forward", normNeed{h, n}, normNeed{a, n}, normNeed{b, n}); err != nil {
		return err
	}
	d := r.Device()
	p, err := d.Pipeline(kSwiGLUFwd)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+3)/4, swigluWG)
	return r.Dispatch(p, g, float64(normWork*n), gpu.Params(uint32(n), g.X, uint32(0), uint32(0)),
		h.Arg(), a.Arg(), b.Arg())
}

// SwiGLUBackward records da = dh * b * silu'(a) and db = dh * silu(a) over n
// elements, overwriting da and db.
// Shapes: da (N, H), db (N, H), dh (N, H), a (N, H), b (N, H).
func SwiGLUBackward(r *gpu.Recorder, da, db, dh, a, b *gpu.Buffer, n int) error {
	if n <= 0 {
		return fmt.Errorf("swiglu backward: need n > 0, got %d", n)
	}
	if err := normSizes("swiglu backward", normNeed{da, n}, normNeed{db, n}, normNeed{dh, n}, normNeed{a, n},
		normNeed{b, n}); err != nil {
		return err
	}
	d := r.Device()
	p, err := d.Pipeline(kSwiGLUBwd)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+3)/4, swigluWG)
	// Binding order (see swiglu.wgsl): da, a, b, db, dh.
	return r.Dispatch(p, g, float64(normWork*n), gpu.Params(uint32(n), g.X, uint32(0), uint32(0)),
		da.Arg(), a.Arg(), b.Arg(), db.Arg(), dh.Arg())
}
