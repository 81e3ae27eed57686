package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

// crossEntropyWG is the workgroup size of the sum kernel and of the
// cross-entropy kernel on GPUs: one workgroup per row, 256 invocations (the
// portable maximum) striding over V.
const crossEntropyWG = 256

// crossEntropyCPUWG is the cross-entropy workgroup size on a CPU adapter.
// lavapipe pays per invocation at every barrier: 256-wide rows measured
// ~60 us of fixed cost per row on a loaded 2-core machine, 32-wide ~3 us,
// with no loss of throughput at V = 4096.
const crossEntropyCPUWG = 32

// crossEntropyMaxV bounds V so that each invocation's two strided loops run
// 2*V/crossEntropyWG = 32,768 times at most, below lavapipe's 65,535.
// The CPU workgroup size is used only up to crossEntropyMaxV/8, the same
// bound for 32 invocations.
const crossEntropyMaxV = 1 << 22

// crossEntropyWork is the estimated work per logit (two reads, two exps, a
// write), used to bound submissions and dispatches. It is calibrated on
// lavapipe, where gpu.Device.SubmitBudget's 1.5e9 stands for about a
// second: the scalar kernel measured ~16-25 ns per logit on a loaded
// 2-core machine (the vec4 one ~8-12), so 24 units per logit. A row also
// costs a fixed ~WG/8 us there, counted as 16*WG logits.
const crossEntropyWork = 24

// crossEntropyWGFor returns the cross-entropy workgroup size for V on d.
func crossEntropyWGFor(d *gpu.Device, V int) int {
	if d.IsCPU() && V <= crossEntropyMaxV/8 {
		return crossEntropyCPUWG
	}
	return crossEntropyWG
}

// sumChunk is the most elements one sum dispatch reduces: 4,096 loop
// iterations per invocation, far below lavapipe's 65,535.
const sumChunk = crossEntropyWG * 4096

// CrossEntropyIgnore is the target that marks a row to ignore (padding):
// its loss and its gradient are zero.
const CrossEntropyIgnore uint32 = 0xFFFFFFFF

var (
	crossEntropySrc = own("crossentropy")
	kCrossEntropy   = kernel("crossentropy", "forward_backward",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(crossEntropyWG)})
	kCrossEntropy4 = kernel("crossentropy", "forward_backward4",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(crossEntropyWG)})
	kSum = kernel("crossentropy", "sum",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(crossEntropyWG)})
)

// CrossEntropyRowsPerChunk returns how many rows of V logits fit one
// binding on this device (and one buffer). The trainer computes the B*T
// rows of logits in chunks of at most this many rows into one reused
// logits buffer, and calls CrossEntropyChunk on each chunk; it returns 0
// when not even one row fits.
func CrossEntropyRowsPerChunk(d *gpu.Device, V int) int {
	if V < 1 {
		return 0
	}
	lim := min(d.Limits.MaxStorageBufferBindingSize, d.Limits.MaxBufferSize) &^ (gpu.Align - 1)
	return int(lim / (4 * uint64(V)))
}

// CrossEntropyForwardBackward records, per row, loss[n] =
// logsumexp(logits[n, :]) - logits[n, targets[n]] and overwrites logits
// with the gradient of the mean loss over all tokens: dlogits = (softmax -
// onehot) * gradScale, where gradScale = 1 / tokens in the (possibly
// accumulated) batch. A target of CrossEntropyIgnore gives loss 0 and a
// zero gradient; any other target >= V gives a NaN loss and a zero
// gradient. Logits larger than one storage binding are processed in
// windows of rows.
func CrossEntropyForwardBackward(r *gpu.Recorder,
	losses *gpu.Buffer, // (N)
	logits *gpu.Buffer, // (N, V), overwritten with dlogits
	targets *gpu.Buffer, // (N) u32
	N, V int, gradScale float32) error {
	return CrossEntropyChunk(r, losses, logits, targets, 0, N, V, gradScale)
}

// CrossEntropyChunk is CrossEntropyForwardBackward for rows row0 ..
// row0+rows-1 of a batch whose logits are held one chunk at a time: logits
// holds just the chunk's rows, while losses and targets are the whole
// batch's buffers, indexed from row0.
func CrossEntropyChunk(r *gpu.Recorder,
	losses *gpu.Buffer, // (N), rows row0 .. row0+rows-1 written
	logits *gpu.Buffer, // (rows, V), overwritten with dlogits
	targets *gpu.Buffer, // (N) u32
	row0, rows, V int, gradScale float32) error {
	return crossEntropyChunk(r, losses, logits, targets, row0, rows, V, gradScale, true, 0)
}

// crossEntropyChunk records the fused kernel with workgroups of wg
// invocations (0: crossEntropyWGFor), using the vec4 variant when allowed
// and V is a multiple of 4. Tests pin both variants and both sizes to the
// reference.
func crossEntropyChunk(r *gpu.Recorder, losses, logits, targets *gpu.Buffer, row0, rows, V int, gradScale float32,
	vec4 bool, wg int) error {
	if row0 < 0 || rows < 0 || V < 1 || V > crossEntropyMaxV {
		return fmt.Errorf("cross-entropy: invalid sizes row0=%d rows=%d V=%d (V at most %d)", row0, rows, V, crossEntropyMaxV)
	}
	if rows == 0 {
		return nil
	}
	end := 4 * uint64(row0+rows)
	if losses.Size < end || targets.Size < end {
		return fmt.Errorf("cross-entropy: rows up to %d overflow losses %s (%d bytes) or targets %s (%d bytes)",
			row0+rows, losses.Name, losses.Size, targets.Name, targets.Size)
	}
	d := r.Device()
	if wg == 0 {
		wg = crossEntropyWGFor(d, V)
	}
	sub := map[string]string{"WG": fmt.Sprint(wg)}
	p, err := d.Pipeline(with(kCrossEntropy, sub))
	if err != nil {
		return err
	}
	p4, err := d.Pipeline(with(kCrossEntropy4, sub))
	if err != nil {
		return err
	}
	wins, err := embeddingRowWindows(d, logits, "cross-entropy: logits", rows, V)
	if err != nil {
		return err
	}
	// Bound each dispatch's work to half a submission budget, so that one
	// dispatch of a huge chunk cannot near the 5 s watchdog on its own.
	rowWork := crossEntropyWork * float64(V+16*wg)
	per := max(1, int(d.SubmitBudget/2/rowWork))
	for _, w := range wins {
		for a := w.r0; a < w.r1; a += per {
			n := min(per, w.r1-a)
			g := d.Grid1D(n, 1)
			loff := w.off + (a-w.r0)*V
			params := gpu.Params(uint32(V), uint32(n), uint32(row0+a), uint32(loff), g.X, gradScale,
				uint32(0), uint32(0))
			k := p
			if vec4 && V%4 == 0 && loff%4 == 0 {
				k = p4
			}
			if err := r.Dispatch(k, g, rowWork*float64(n), params, losses.Arg(), w.arg, targets.Arg()); err != nil {
				return err
			}
		}
	}
	return nil
}

// SumReduce records out[0] = scale * sum(x[0:n]) (the mean loss when
// scale is 1/n) without reading x back. Each dispatch is one workgroup
// that tree-reduces a chunk of up to sumChunk elements, bound as its own
// range of x; longer inputs take several dispatches that accumulate into
// out[0] in order, so any n works, x may exceed one storage binding, and
// the result is deterministic. Only out[0] is written.
func SumReduce(r *gpu.Recorder,
	out *gpu.Buffer, // (1)
	x *gpu.Buffer, // (n)
	n int, scale float32) error {
	if n < 0 || 4*uint64(n) > x.Size {
		return fmt.Errorf("sum: length %d invalid for %s (%d bytes)", n, x.Name, x.Size)
	}
	d := r.Device()
	p, err := d.Pipeline(kSum)
	if err != nil {
		return err
	}
	// sumChunk*4 bytes is a multiple of every offset alignment WebGPU allows.
	for start := 0; start == 0 || start < n; start += sumChunk {
		acc := uint32(0)
		if start > 0 {
			acc = 1
		}
		count := min(sumChunk, n-start)
		chunk := x.Range(4*uint64(start), max(4*uint64(count), 4))
		params := gpu.Params(uint32(count), acc, scale, uint32(0))
		if err := r.Dispatch(p, gpu.Grid{X: 1, Y: 1, Z: 1}, float64(elems4*count), params, out.Arg(), chunk); err != nil {
			return err
		}
	}
	return nil
}
