package shaders

import (
	"fmt"
	"math"
	"sync"

	"github.com/step-gpu/step-gpu/gpu"
)

// rmsnormWG is the workgroup size of every RMSNorm kernel: the row kernels
// run one workgroup per row, the dw kernels one invocation per column (or
// vec4 of columns). Measured on lavapipe with the scalar forward at the d512
// shape (N = 2048, C = 512, one busy shared machine, so ratios only): 8 and
// 32 ran ~4x faster than 64 and ~10x faster than 256, its barriers being
// costly; 32 is also one warp on NVIDIA, so one size serves both.
const rmsnormWG = 32

// normWork is the work per element these families report to the Recorder,
// which bounds each submission by estimated FLOPs against a budget sized for
// ~1.5 GFLOP/s on the CPU adapter (gpu.Device.SubmitBudget). The kernels
// are memory- and barrier-bound, far below their nominal few FLOPs per
// element: on lavapipe the slowest (scalar RMSNorm rows, on a busy machine)
// took ~25-40 ns per element, i.e. ~40-60 budget units. So an element counts
// as normWork units for one pass over a row (or elementwise) and a
// submission filled with these kernels still stays near a second.
const normWork = 48

// rmsnormMinRB is the smallest row block of the dw reduction, so that small
// N does not spend a dispatch summing one row per block.
const rmsnormMinRB = 16

var (
	rmsnormSrc  = own("rmsnorm")
	rmsnormSubs = map[string]string{"WG": fmt.Sprint(rmsnormWG)}
	kRMSNormFwd = kernel("rmsnorm", "forward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormDx = kernel("rmsnorm", "backward_dx",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormFwd4 = kernel("rmsnorm", "forward4",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormDx4 = kernel("rmsnorm", "backward_dx4",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormDwPartial = kernel("rmsnorm", "backward_dw_partial",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormDwPartial4 = kernel("rmsnorm", "backward_dw_partial4",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead}, rmsnormSubs)
	kRMSNormDwReduce = kernel("rmsnorm", "backward_dw_reduce",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, rmsnormSubs)
)

// rmsnormVec4 enables the vec4 kernels (forward4, backward_dx4,
// backward_dw_partial4) for C % 4 == 0: ~2.3x faster on lavapipe at the d512
// shape. Tests turn it off to pin them to the scalar kernels.
var rmsnormVec4 = true

func rmsnormUseVec4(C int) bool { return rmsnormVec4 && C%4 == 0 }

// normNeed is a buffer and the float32 elements a launcher will touch in it.
type normNeed struct {
	b *gpu.Buffer
	n int
}

// normSizes checks that each buffer holds the elements a launcher will
// touch, so a shape mistake names the buffer instead of silently reading
// clamped values.
func normSizes(op string, needs ...normNeed) error {
	for _, nd := range needs {
		if nd.b.Len() < nd.n {
			return fmt.Errorf("%s: buffer %s holds %d floats, needs %d", op, nd.b.Name, nd.b.Len(), nd.n)
		}
	}
	return nil
}

// rmsnormParams mirrors the WGSL Params struct.
func rmsnormParams(N, C int, nwgX uint32, eps float32, RB, NRB int) []byte {
	return gpu.Params(uint32(N), uint32(C), nwgX, eps, uint32(RB), uint32(NRB), uint32(0), uint32(0))
}

// rmsnormBlocks returns the rows per block RB and the number of blocks NRB
// of the dw reduction. Both are near sqrt(N), so the per-invocation loops of
// dw_partial (RB rows) and dw_reduce (NRB blocks) stay far below lavapipe's
// 65,535-iteration limit for any N a u32 index can address.
func rmsnormBlocks(N int) (RB, NRB int) {
	RB = max(rmsnormMinRB, int(math.Ceil(math.Sqrt(float64(N)))))
	return RB, (N + RB - 1) / RB
}

// RMSNormScratchLen returns the float32 elements of the scratch buffer that
// RMSNormBackwardScratch needs for N rows of C: one partial dw row per
// block of rows, about sqrt(N)*C.
func RMSNormScratchLen(N, C int) int {
	_, NRB := rmsnormBlocks(N)
	return NRB * C
}

// RMSNormForward records out = x * rstd * w over N = B*T rows of C, with
// rstd = 1/sqrt(mean(x^2) + eps) saved for the backward pass.
// Shapes: out (N, C), rstd (N), x (N, C), w (C).
func RMSNormForward(r *gpu.Recorder, out, rstd, x, w *gpu.Buffer, N, C int, eps float32) error {
	if N <= 0 || C <= 0 {
		return fmt.Errorf("rmsnorm forward: need N, C > 0, got N=%d C=%d", N, C)
	}
	if err := normSizes("rmsnorm forward", normNeed{out, N * C}, normNeed{rstd, N},
		normNeed{x, N * C}, normNeed{w, C}); err != nil {
		return err
	}
	k := kRMSNormFwd
	if rmsnormUseVec4(C) {
		k = kRMSNormFwd4
	}
	d := r.Device()
	p, err := d.Pipeline(k)
	if err != nil {
		return err
	}
	g := d.Grid1D(N, 1)
	return r.Dispatch(p, g, float64(normWork*N*C), rmsnormParams(N, C, g.X, eps, 0, 0),
		out.Arg(), rstd.Arg(), x.Arg(), w.Arg())
}

// RMSNormBackward records the RMSNorm backward pass: dx is overwritten and
// dw, a parameter gradient, accumulated (+=). It uses a scratch buffer of
// RMSNormScratchLen(N, C) elements that is allocated once per device and
// size class and cached (RMSNormBackwardScratch takes one explicitly).
// Shapes: dx (N, C), dw (C), dout (N, C), x (N, C), w (C), rstd (N).
func RMSNormBackward(r *gpu.Recorder, dx, dw, dout, x, w, rstd *gpu.Buffer, N, C int) error {
	if N <= 0 || C <= 0 {
		return fmt.Errorf("rmsnorm backward: need N, C > 0, got N=%d C=%d", N, C)
	}
	part, err := rmsnormScratch(r.Device(), RMSNormScratchLen(N, C))
	if err != nil {
		return err
	}
	return RMSNormBackwardScratch(r, dx, dw, dout, x, w, rstd, part, N, C)
}

// RMSNormBackwardScratch is RMSNormBackward with the caller's scratch
// buffer part, of at least RMSNormScratchLen(N, C) float32 elements, which
// holds per-block partial sums of dw between its dispatches.
// Shapes: as RMSNormBackward, and part (NRB, C).
func RMSNormBackwardScratch(r *gpu.Recorder, dx, dw, dout, x, w, rstd, part *gpu.Buffer, N, C int) error {
	if N <= 0 || C <= 0 {
		return fmt.Errorf("rmsnorm backward: need N, C > 0, got N=%d C=%d", N, C)
	}
	if err := normSizes("rmsnorm backward", normNeed{dx, N * C}, normNeed{dw, C}, normNeed{dout, N * C},
		normNeed{x, N * C}, normNeed{w, C}, normNeed{rstd, N}, normNeed{part, RMSNormScratchLen(N, C)}); err != nil {
		return err
	}
	kdx, kpart, partCols := kRMSNormDx, kRMSNormDwPartial, C
	if rmsnormUseVec4(C) {
		kdx, kpart, partCols = kRMSNormDx4, kRMSNormDwPartial4, C/4
	}
	d := r.Device()
	pdx, err := d.Pipeline(kdx)
	if err != nil {
		return err
	}
	ppart, err := d.Pipeline(kpart)
	if err != nil {
		return err
	}
	pred, err := d.Pipeline(kRMSNormDwReduce)
	if err != nil {
		return err
	}
	RB, NRB := rmsnormBlocks(N)
	g := d.Grid1D(N, 1)
	if err := r.Dispatch(pdx, g, float64(normWork*N*C), rmsnormParams(N, C, g.X, 0, RB, NRB),
		dx.Arg(), dout.Arg(), x.Arg(), w.Arg(), rstd.Arg()); err != nil {
		return err
	}
	prm := rmsnormParams(N, C, 0, 0, RB, NRB)
	pg := gpu.Grid{X: uint32((partCols + rmsnormWG - 1) / rmsnormWG), Y: uint32(NRB), Z: 1}
	if err := r.Dispatch(ppart, pg, float64(normWork*N*C), prm, part.Arg(), dout.Arg(), x.Arg(), rstd.Arg()); err != nil {
		return err
	}
	rg := gpu.Grid{X: uint32((C + rmsnormWG - 1) / rmsnormWG), Y: 1, Z: 1}
	return r.Dispatch(pred, rg, float64(normWork*NRB*C), prm, dw.Arg(), part.Arg())
}

// rmsnormScratches caches the dw scratch buffers per device, one per size
// class (a power of two of elements), so a training step never allocates.
var rmsnormScratches = struct {
	sync.Mutex
	m map[*gpu.Device]map[int]*gpu.Buffer
}{m: map[*gpu.Device]map[int]*gpu.Buffer{}}

func rmsnormScratch(d *gpu.Device, n int) (*gpu.Buffer, error) {
	size := 256
	for size < n {
		size *= 2
	}
	rmsnormScratches.Lock()
	defer rmsnormScratches.Unlock()
	byDev := rmsnormScratches.m[d]
	if byDev == nil {
		byDev = map[int]*gpu.Buffer{}
		rmsnormScratches.m[d] = byDev
	}
	if b, ok := byDev[size]; ok {
		return b, nil
	}
	b, err := d.NewBuffer(fmt.Sprintf("rmsnorm.dw_partial.%d", size), gpu.CatCache, uint64(4*size))
	if err != nil {
		return nil, fmt.Errorf("rmsnorm backward scratch: %w", err)
	}
	byDev[size] = b
	return b, nil
}

// ReleaseRMSNormScratch frees the scratch buffers RMSNormBackward cached
// for d. Call it before closing the device, with no recorded work pending.
func ReleaseRMSNormScratch(d *gpu.Device) {
	rmsnormScratches.Lock()
	defer rmsnormScratches.Unlock()
	for _, b := range rmsnormScratches.m[d] {
		b.Release()
	}
	delete(rmsnormScratches.m, d)
}
