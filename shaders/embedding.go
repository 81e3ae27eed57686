package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

// embeddingWG is the workgroup size of the embedding kernels: the forward
// uses one invocation per output element, the backward one per column of a
// vocabulary row (64 adjacent columns read adjacent dout elements).
const (
	embeddingWG         = 256
	embeddingBackwardWG = 64
)

// embeddingPass is the most list entries one backward invocation sums in
// one dispatch: half of lavapipe's 65,535 loop iterations per invocation
// (WEBGPU.md trap 2). A token that appears more often in a batch is summed
// over several dispatches that accumulate, in order.
const embeddingPass = 32768

// embeddingWork and embeddingGroupWork estimate the work of an element
// copied or added and the fixed cost of a workgroup, to bound submissions.
// Calibrated on lavapipe (gpu.Device.SubmitBudget's 1.5e9 is about a
// second there) on a loaded 2-core machine: the forward at N*C = 6.3M took
// ~55 ms (~13 units per element); the backward at V=32000, C=768, N=8192
// took ~245 ms, mostly the 384k workgroups of rows with no token (~700
// units each).
const (
	embeddingWork      = 16
	embeddingGroupWork = 1024
)

// embeddingMaxBind, when non-zero, replaces the device's storage binding
// limit in the window computation; tests set it to exercise windows.
var embeddingMaxBind uint64

var (
	embeddingSrc  = own("embedding")
	kEmbeddingFwd = kernel("embedding", "forward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(embeddingWG)})
	kEmbeddingBwd = kernel("embedding", "backward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(embeddingBackwardWG)})
)

// embeddingWindow is a run of rows [r0, r1) of a row-major (rows, width)
// f32 tensor bound as one storage binding: arg starts at an aligned byte
// offset at or before row r0, and off is the element offset of row r0
// inside the binding.
type embeddingWindow struct {
	r0, r1 int
	off    int
	arg    gpu.Arg
}

// embeddingRowWindows splits a (rows, width) f32 tensor held at the start
// of b into windows that each fit one storage binding of the device, with
// binding offsets aligned to minStorageBufferOffsetAlignment. A tensor that
// fits gives one window. The cross-entropy launcher uses it for logits.
func embeddingRowWindows(d *gpu.Device, b *gpu.Buffer, name string, rows, width int) ([]embeddingWindow, error) {
	maxBind := d.Limits.MaxStorageBufferBindingSize
	if embeddingMaxBind != 0 {
		maxBind = embeddingMaxBind
	}
	maxBind &^= 3 // binding sizes are multiples of 4 bytes
	align := uint64(d.Limits.MinStorageBufferOffsetAlignment)
	rowBytes := 4 * uint64(width)
	total := rowBytes * uint64(rows)
	if total > b.Size {
		return nil, fmt.Errorf("%s: (%d, %d) f32 needs %d bytes, buffer %s holds %d", name, rows, width, total, b.Name, b.Size)
	}
	if total <= maxBind {
		return []embeddingWindow{{r0: 0, r1: rows, arg: b.Range(0, max(total, 4))}}, nil
	}
	// A window starts at most align-4 bytes before its first row.
	per := uint64(0)
	if maxBind >= align {
		per = (maxBind - (align - 4)) / rowBytes
	}
	if per == 0 {
		return nil, fmt.Errorf("%s: one row of %d f32 (%.1f MiB) exceeds the device's maxStorageBufferBindingSize %.1f MiB",
			name, width, gpu.MiB(rowBytes), gpu.MiB(maxBind))
	}
	var out []embeddingWindow
	for r0 := 0; r0 < rows; r0 += int(per) {
		r1 := min(rows, r0+int(per))
		start := uint64(r0) * rowBytes
		off := start / align * align
		end := uint64(r1) * rowBytes
		out = append(out, embeddingWindow{r0: r0, r1: r1, off: int((start - off) / 4), arg: b.Range(off, end-off)})
	}
	return out, nil
}

// embeddingCheck rejects sizes whose element indices would not fit the
// kernels' u32 arithmetic.
func embeddingCheck(N, C, V int) error {
	if N < 0 || C < 1 || V < 1 {
		return fmt.Errorf("embedding: invalid sizes N=%d C=%d V=%d", N, C, V)
	}
	if uint64(N)*uint64(C) >= 1<<31 || uint64(V)*uint64(C) >= 1<<31 {
		return fmt.Errorf("embedding: N*C=%d or V*C=%d reaches 2^31 elements", N*C, V*C)
	}
	return nil
}

// embeddingNeed checks that each buffer holds at least its number of 4-byte
// elements, so a wrong size is an error rather than a write the device's
// robust access would silently drop. Pairs are buffer, elements.
func embeddingNeed(op string, pairs ...any) error {
	for i := 0; i < len(pairs); i += 2 {
		b, n := pairs[i].(*gpu.Buffer), pairs[i+1].(int)
		if b.Size < 4*uint64(n) {
			return fmt.Errorf("%s: %s holds %d bytes, needs %d elements", op, b.Name, b.Size, n)
		}
	}
	return nil
}

// EmbeddingForward records out[n, :] = wte[tokens[n], :]. A token >= V
// gives a row of zeros. When wte exceeds one storage binding it is bound in
// windows of vocabulary rows, one dispatch each.
func EmbeddingForward(r *gpu.Recorder,
	out *gpu.Buffer, // (N, C)
	tokens *gpu.Buffer, // (N) u32
	wte *gpu.Buffer, // (V, C)
	N, C, V int) error {
	if err := embeddingCheck(N, C, V); err != nil {
		return err
	}
	if N == 0 {
		return nil
	}
	if err := embeddingNeed("embedding forward", out, N*C, tokens, N); err != nil {
		return err
	}
	d := r.Device()
	p, err := d.Pipeline(kEmbeddingFwd)
	if err != nil {
		return err
	}
	wins, err := embeddingRowWindows(d, wte, "embedding forward: wte", V, C)
	if err != nil {
		return err
	}
	g := d.Grid1D(N*C, embeddingWG)
	for i, w := range wins {
		zero := uint32(0)
		if i == 0 {
			zero = 1
		}
		params := gpu.Params(uint32(N), uint32(C), uint32(V), g.X, uint32(w.r0), uint32(w.r1), uint32(w.off), zero,
			uint32(0), uint32(0), uint32(0), uint32(0))
		if err := r.Dispatch(p, g, float64(embeddingWork*N*C), params, out.Arg(), tokens.Arg(), w.arg); err != nil {
			return err
		}
	}
	return nil
}

// BuildTokenIndex returns the inverted index of a batch's tokens in CSR
// form: offsets (V+1) and positions (N), where positions[offsets[v]:
// offsets[v+1]] are the rows n with tokens[n] == v, in increasing n (the
// embedding backward sums them in that order, so it is deterministic). A
// token >= V is an error naming it.
func BuildTokenIndex(tokens []uint32, V int) (offsets, positions []uint32, err error) {
	offsets = make([]uint32, V+1)
	for n, t := range tokens {
		if int64(t) >= int64(V) {
			return nil, nil, fmt.Errorf("token index: token %d at position %d is outside the vocabulary of %d", t, n, V)
		}
		offsets[t+1]++
	}
	for v := 0; v < V; v++ {
		offsets[v+1] += offsets[v]
	}
	positions = make([]uint32, len(tokens))
	next := append([]uint32(nil), offsets[:V]...)
	for n, t := range tokens {
		positions[next[t]] = uint32(n)
		next[t]++
	}
	return offsets, positions, nil
}

// EmbeddingBackward records dwte[v, :] += sum of dout[n, :] over the rows n
// listed for v by BuildTokenIndex. Each invocation owns one element of
// dwte, so no atomics are needed. A list longer than embeddingPass entries
// is summed over several dispatches (passes) that accumulate in order; the
// launcher does not read offsets back, so it runs ceil(N/embeddingPass)
// passes, and a pass finds rows with nothing left to add idle.
func EmbeddingBackward(r *gpu.Recorder,
	dwte *gpu.Buffer, // (V, C), accumulated (+=)
	dout *gpu.Buffer, // (N, C)
	offsets *gpu.Buffer, // (V+1) u32
	positions *gpu.Buffer, // (N) u32
	N, C, V int) error {
	if err := embeddingCheck(N, C, V); err != nil {
		return err
	}
	if N == 0 {
		return nil
	}
	if err := embeddingNeed("embedding backward", dout, N*C, offsets, V+1, positions, N); err != nil {
		return err
	}
	d := r.Device()
	p, err := d.Pipeline(kEmbeddingBwd)
	if err != nil {
		return err
	}
	wins, err := embeddingRowWindows(d, dwte, "embedding backward: dwte", V, C)
	if err != nil {
		return err
	}
	blocks := (C + embeddingBackwardWG - 1) / embeddingBackwardWG
	for k0 := 0; k0 < N; k0 += embeddingPass {
		for _, w := range wins {
			g := d.Grid1D((w.r1-w.r0)*blocks, 1)
			work := float64(embeddingWork*min(N-k0, embeddingPass)*C + embeddingGroupWork*(w.r1-w.r0)*blocks)
			params := gpu.Params(uint32(N), uint32(C), uint32(V), g.X, uint32(w.r0), uint32(w.r1), uint32(w.off), uint32(0),
				uint32(k0), uint32(k0+embeddingPass), uint32(0), uint32(0))
			if err := r.Dispatch(p, g, work, params, w.arg, dout.Arg(), offsets.Arg(), positions.Arg()); err != nil {
				return err
			}
		}
	}
	return nil
}
