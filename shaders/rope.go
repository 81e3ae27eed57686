package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

// ropeWG is the workgroup size of the RoPE kernels: one pair per
// invocation, no barriers.
const ropeWG = 256

var (
	ropeSrc          = own("rope")
	ropeSubs         = map[string]string{"WG": fmt.Sprint(ropeWG)}
	kRoPERotate      = kernel("rope", "rotate", []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, ropeSubs)
	kRoPERotateInPl  = kernel("rope", "rotate_inplace", []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite}, ropeSubs)
	kRoPERotate4     = kernel("rope", "rotate4", []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, ropeSubs)
	kRoPERotateInPl4 = kernel("rope", "rotate_inplace4", []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite}, ropeSubs)
)

// ropeVec4 enables the vec4 kernels (four pairs per invocation) for
// HS % 8 == 0: ~4x faster on lavapipe at the d512 shape (HS = 64). Tests
// turn it off to pin them to the scalar kernels.
var ropeVec4 = true

// RoPEForward records out = rope(x): rotary position embeddings in the
// rotate-half convention, pairing x[i] with x[i+HS/2] in every head and
// turning the pair by t * theta^(-2i/HS), t the time index of the row.
// out and x must be different buffers (see RoPEForwardInPlace).
// Shapes: out (B, T, NH*HS), x (B, T, NH*HS).
func RoPEForward(r *gpu.Recorder, out, x *gpu.Buffer, B, T, NH, HS int, theta float32) error {
	return ropeDispatch(r, out, x, B, T, NH, HS, theta, 1)
}

// RoPEForwardInPlace records x = rope(x). Shapes: x (B, T, NH*HS).
func RoPEForwardInPlace(r *gpu.Recorder, x *gpu.Buffer, B, T, NH, HS int, theta float32) error {
	return ropeDispatch(r, x, nil, B, T, NH, HS, theta, 1)
}

// RoPEBackward records dx = rope⁻¹(dout), the inverse rotation (by the
// negated angle), overwriting dx. Shapes: dx (B, T, NH*HS),
// dout (B, T, NH*HS).
func RoPEBackward(r *gpu.Recorder, dx, dout *gpu.Buffer, B, T, NH, HS int, theta float32) error {
	return ropeDispatch(r, dx, dout, B, T, NH, HS, theta, -1)
}

// RoPEBackwardInPlace records d = rope⁻¹(d), turning the gradient of the
// rotated tensor into the gradient of its input. Shapes: d (B, T, NH*HS).
func RoPEBackwardInPlace(r *gpu.Recorder, d *gpu.Buffer, B, T, NH, HS int, theta float32) error {
	return ropeDispatch(r, d, nil, B, T, NH, HS, theta, -1)
}

// ropeDispatch records one rotation; in == nil means in place on out.
func ropeDispatch(r *gpu.Recorder, out, in *gpu.Buffer, B, T, NH, HS int, theta, sign float32) error {
	if B <= 0 || T <= 0 || NH <= 0 || HS <= 0 || HS%2 != 0 {
		return fmt.Errorf("rope: need B, T, NH > 0 and an even HS > 0, got B=%d T=%d NH=%d HS=%d", B, T, NH, HS)
	}
	if !(theta > 1) {
		return fmt.Errorf("rope: theta must be > 1, got %v", theta)
	}
	if out == in {
		return fmt.Errorf("rope: out and x are the same buffer %s: use the in-place launcher", out.Name)
	}
	n := B * T * NH * HS
	if err := normSizes("rope", normNeed{out, n}); err != nil {
		return err
	}
	if in != nil {
		if err := normSizes("rope", normNeed{in, n}); err != nil {
			return err
		}
	}
	d := r.Device()
	pairs := n / 2
	work := float64(normWork * n) // see normWork
	k, items := kRoPERotate, pairs
	if in == nil {
		k = kRoPERotateInPl
	}
	if ropeVec4 && HS%8 == 0 {
		k, items = kRoPERotate4, pairs/4
		if in == nil {
			k = kRoPERotateInPl4
		}
	}
	p, err := d.Pipeline(k)
	if err != nil {
		return err
	}
	g := d.Grid1D(items, ropeWG)
	prm := gpu.Params(uint32(items), uint32(T), uint32(NH), uint32(HS), g.X, theta, sign, uint32(0))
	if in == nil {
		return r.Dispatch(p, g, work, prm, out.Arg())
	}
	return r.Dispatch(p, g, work, prm, out.Arg(), in.Arg())
}
