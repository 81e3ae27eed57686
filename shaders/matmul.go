package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

// Layout says how A and B are stored.
type Layout int

// The three layouts of a training step's products.
const (
	NN Layout = iota // out (M,N) = A (M,K) · B (K,N)
	NT               // out (M,N) = A (M,K) · B (N,K)ᵀ   (linear forward: y = x·Wᵀ)
	TN               // out (M,N) = A (K,M)ᵀ · B (K,N)   (weight gradient: dW = dyᵀ·x)
)

// String names the layout.
func (l Layout) String() string {
	switch l {
	case NN:
		return "NN"
	case NT:
		return "NT"
	case TN:
		return "TN"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// matmulKChunk bounds the K range of one dispatch. Every kernel of the family
// loops at most matmulKChunk (simple) or matmulKChunk/4 (texture) times per
// invocation, far below lavapipe's 65,535-iteration loop limiter (WEBGPU.md);
// longer products are split into K chunks whose dispatches accumulate.
const matmulKChunk = 8192

// matmulTile is the simple kernel's workgroup tile: 8x8 invocations of 4x4.
const matmulTile = 32

var (
	matmulSrc     = own("matmul")
	kMatmulSimple = kernel("matmul", "simple",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}, map[string]string{})
)

// matmulCPUBudgets is how many submit budgets one dispatch of the texture
// kernels may hold on a CPU adapter (matmulTexBudgets). The budget is sized
// for the slowest kernels there (about 1.5 GFLOP/s: a second); the
// texture-fed matmul runs 20 times faster, so 6 budgets stay near 0.3 s
// (the simple kernel, 3-5x slower, keeps one), and splitting a 1024^3
// product into two dispatches measured 3-14% slower than one dispatch (each
// layout, alternating in one process, lavapipe, 2026-11-28).
const matmulCPUBudgets = 6

// Test hooks: a non-zero matmulBindingCap lowers the storage-binding limit and
// a non-zero matmulBlockFLOPs the work of one dispatch, so small tests
// exercise the splitting that large products need.
var (
	matmulBindingCap uint64
	matmulBlockFLOPs float64
)

// Matmul records out (+)= op(A)·op(B); with accumulate the product is added to out (parameter
// gradients accumulate), otherwise out is overwritten.
//
// out is (M, N); a is (M, K) for NN and NT and (K, M) for TN; b is (K, N) for
// NN and TN and (N, K) for NT. Any M, N, K >= 1 is accepted: the product is
// split into blocks of rows, columns and K so that each dispatch's work stays
// under the device's submit budget, each operand binding under the storage
// binding limit and each invocation's loop under lavapipe's limiter. The
// kernels used (storage-buffer or texture-fed, with sampled or read-only
// storage textures) follow SetMatmulPath; by default the first call on a
// device measures them and keeps the fastest.
func Matmul(r *gpu.Recorder, out, a, b *gpu.Buffer, M, N, K int, layout Layout, accumulate bool) error {
	op, err := newMatmulOp(out, a, b, M, N, K, layout, accumulate)
	if err != nil {
		return err
	}
	path, err := matmulPathFor(r.Device())
	if err != nil {
		return err
	}
	return matmulOn(r, op, path)
}

// matmulOp is one product with its operands' strides: element (m, k) of
// op(A) is a[m*sam + k*sak], element (k, n) of op(B) is b[k*sbk + n*sbn].
type matmulOp struct {
	out, a, b          *gpu.Buffer
	M, N, K            int
	sam, sak, sbk, sbn int
	layout             Layout
	acc                bool
}

func newMatmulOp(out, a, b *gpu.Buffer, M, N, K int, layout Layout, acc bool) (*matmulOp, error) {
	op := &matmulOp{out: out, a: a, b: b, M: M, N: N, K: K, layout: layout, acc: acc}
	switch layout {
	case NN:
		op.sam, op.sak, op.sbk, op.sbn = K, 1, N, 1
	case NT:
		op.sam, op.sak, op.sbk, op.sbn = K, 1, 1, K
	case TN:
		op.sam, op.sak, op.sbk, op.sbn = 1, M, N, 1
	default:
		return nil, fmt.Errorf("matmul: unknown layout %d", int(layout))
	}
	if M < 1 || N < 1 || K < 1 {
		return nil, fmt.Errorf("matmul %v: sizes M=%d N=%d K=%d must all be at least 1", layout, M, N, K)
	}
	if out == a || out == b {
		return nil, fmt.Errorf("matmul %v: out %s aliases an input", layout, out.Name)
	}
	for _, x := range []struct {
		buf  *gpu.Buffer
		n    int
		what string
	}{{out, M * N, "out"}, {a, M * K, "a"}, {b, K * N, "b"}} {
		if x.buf.Len() < x.n {
			return nil, fmt.Errorf("matmul %v %dx%dx%d: %s %s holds %d elements, needs %d",
				layout, M, N, K, x.what, x.buf.Name, x.buf.Len(), x.n)
		}
	}
	return op, nil
}

// matmulBlock is one dispatch's share of a product: rows m0..m0+bm of out,
// columns n0..n0+bn, and the K range k0..k0+bk.
type matmulBlock struct{ m0, n0, k0, bm, bn, bk int }

// span is the number of elements from the first to the last element of an
// (r, c) block of a matrix with strides sr and sc.
func matmulSpan(r, c, sr, sc int) int { return (r-1)*sr + (c-1)*sc + 1 }

func matmulMaxBinding(d *gpu.Device) uint64 {
	if matmulBindingCap > 0 {
		return min(matmulBindingCap, d.Limits.MaxStorageBufferBindingSize)
	}
	return d.Limits.MaxStorageBufferBindingSize
}

// fitsBinding reports whether a block of span elements of buf can be bound:
// always when the whole buffer fits the binding limit (it is bound whole),
// else when the span plus alignment slack does.
func (op *matmulOp) fitsBinding(d *gpu.Device, buf *gpu.Buffer, span int) bool {
	lim := matmulMaxBinding(d)
	if buf.Size <= lim {
		return true
	}
	slack := int(d.Limits.MinStorageBufferOffsetAlignment)/4 + 4
	return uint64(4*(span+slack)) <= lim
}

// plan returns the block size for a path: K a multiple of 4 up to
// matmulKChunk and the whole of M and N, shrunk while a constraint fails by
// halving the dimension that constraint depends on most (rows and columns
// in multiples of the path's tile tm x tn while above it): the block's work
// (at most budgets times the device's submit budget, so a dispatch stays
// well under a second), each operand's binding, and the path's own limits,
// which extra checks, returning the dimension to shrink (0 rows, 1 columns,
// 2 K) or -1 when the block fits.
func (op *matmulOp) plan(d *gpu.Device, tm, tn int, budgets float64, extra func(bm, bn, bk int) int) (matmulBlock, error) {
	maxFLOPs := d.SubmitBudget * budgets
	if matmulBlockFLOPs > 0 {
		maxFLOPs = matmulBlockFLOPs
	}
	nk := (op.K + matmulKChunk - 1) / matmulKChunk
	dims := [3]int{op.M, op.N, min(op.K, roundUp((op.K+nk-1)/nk, 4))} // bm, bn, bk
	tiles := [3]int{tm, tn, 4}
	// larger picks, of two dimensions, the one contributing more to a span.
	larger := func(i, si, j, sj int) int {
		if (dims[i]-1)*si >= (dims[j]-1)*sj {
			return i
		}
		return j
	}
	for {
		bm, bn, bk := dims[0], dims[1], dims[2]
		shrink := -1
		switch {
		case extra != nil && extra(bm, bn, bk) >= 0:
			shrink = extra(bm, bn, bk)
		case 2*float64(bm)*float64(bn)*float64(bk) > maxFLOPs:
			shrink = 2
			if max(bm, bn) > 64 {
				shrink = larger(0, 1, 1, 1)
			}
		case !op.fitsBinding(d, op.a, matmulSpan(bm, bk, op.sam, op.sak)):
			shrink = larger(0, op.sam, 2, op.sak)
		case !op.fitsBinding(d, op.b, matmulSpan(bk, bn, op.sbk, op.sbn)):
			shrink = larger(2, op.sbk, 1, op.sbn)
		case !op.fitsBinding(d, op.out, matmulSpan(bm, bn, op.N, 1)):
			shrink = larger(0, op.N, 1, 1)
		default:
			return matmulBlock{bm: bm, bn: bn, bk: bk}, nil
		}
		x, t := dims[shrink], tiles[shrink]
		switch {
		case x > t:
			dims[shrink] = roundUp((x+1)/2, t)
		case x > 1 && shrink < 2:
			dims[shrink] = (x + 1) / 2
		default:
			return matmulBlock{}, fmt.Errorf("matmul %v %dx%dx%d: no block fits the device limits", op.layout, op.M, op.N, op.K)
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// blocks lists the blocks of size s covering the product, K chunks outermost
// (so that chunks accumulate in order), then columns, then rows.
func (op *matmulOp) blocks(s matmulBlock) []matmulBlock {
	var out []matmulBlock
	for k0 := 0; k0 < op.K; k0 += s.bk {
		for n0 := 0; n0 < op.N; n0 += s.bn {
			for m0 := 0; m0 < op.M; m0 += s.bm {
				out = append(out, matmulBlock{m0: m0, n0: n0, k0: k0,
					bm: min(s.bm, op.M-m0), bn: min(s.bn, op.N-n0), bk: min(s.bk, op.K-k0)})
			}
		}
	}
	return out
}

// bind returns the binding holding the span elements of buf from element lo,
// and lo's index inside that binding: the whole buffer when it fits the
// binding limit, else an aligned range around the span.
func matmulBind(d *gpu.Device, buf *gpu.Buffer, lo, span int) (gpu.Arg, uint32) {
	if buf.Size <= matmulMaxBinding(d) {
		return buf.Arg(), uint32(lo)
	}
	// Starts stay on 4-element bounds (so every binding holds whole vec4s,
	// which the pack kernel and tiled_sa read) as well as on the device's alignment.
	align := max(int(d.Limits.MinStorageBufferOffsetAlignment)/4, 4)
	start := lo / align * align
	end := min(roundUp(lo+span, 4), buf.Len())
	return buf.Range(uint64(4*start), uint64(4*(end-start))), uint32(lo - start)
}

// accFlag is 1 where a block adds to out: always with accumulate, and for
// every K chunk after the first.
func (op *matmulOp) accFlag(blk matmulBlock) uint32 {
	if op.acc || blk.k0 > 0 {
		return 1
	}
	return 0
}

// bindOut binds the block's rows and columns of out.
func (op *matmulOp) bindOut(d *gpu.Device, blk matmulBlock) (gpu.Arg, uint32) {
	return matmulBind(d, op.out, blk.m0*op.N+blk.n0, matmulSpan(blk.bm, blk.bn, op.N, 1))
}

// matmulSimple records the product with the storage-buffer kernel.
func matmulSimple(r *gpu.Recorder, op *matmulOp) error {
	d := r.Device()
	p, err := d.Pipeline(kMatmulSimple)
	if err != nil {
		return err
	}
	lim := int(d.Limits.MaxComputeWorkgroupsPerDimension) * matmulTile
	size, err := op.plan(d, matmulTile, matmulTile, 1, func(bm, bn, _ int) int {
		switch {
		case bm > lim:
			return 0
		case bn > lim:
			return 1
		}
		return -1
	})
	if err != nil {
		return err
	}
	for _, blk := range op.blocks(size) {
		oArg, oBase := op.bindOut(d, blk)
		aArg, aBase := matmulBind(d, op.a, blk.m0*op.sam+blk.k0*op.sak, matmulSpan(blk.bm, blk.bk, op.sam, op.sak))
		bArg, bBase := matmulBind(d, op.b, blk.k0*op.sbk+blk.n0*op.sbn, matmulSpan(blk.bk, blk.bn, op.sbk, op.sbn))
		g := gpu.Grid{X: uint32((blk.bn + matmulTile - 1) / matmulTile), Y: uint32((blk.bm + matmulTile - 1) / matmulTile), Z: 1}
		params := gpu.Params(uint32(blk.bm), uint32(blk.bn), uint32(blk.bk), op.accFlag(blk),
			aBase, uint32(op.sam), uint32(op.sak), bBase, uint32(op.sbk), uint32(op.sbn), oBase, uint32(op.N))
		work := 2 * float64(blk.bm) * float64(blk.bn) * float64(blk.bk)
		if err := r.Dispatch(p, g, work, params, oArg, aArg, bArg); err != nil {
			return fmt.Errorf("matmul %v %dx%dx%d: %w", op.layout, op.M, op.N, op.K, err)
		}
	}
	return nil
}
