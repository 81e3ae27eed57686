package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

const (
	// gradNormWG is the workgroup size of both gradnorm kernels.
	gradNormWG = 256
	// gradNormVPI is the number of vec4s each invocation of squares sums.
	// 16 halves the workgroup reductions of 8 (~30% of the kernel's time
	// on lavapipe) and still gives a GPU 1024 workgroups per 16M elements.
	gradNormVPI = 16
	// GradNormChunk is the number of gradient elements one partials slot
	// covers: one workgroup of squares, WG invocations of VPI vec4s.
	GradNormChunk = gradNormWG * gradNormVPI * 4
	// gradNormMaxTrips bounds the loop of finalize (ceil(nPartials/WG)
	// iterations per invocation) far below lavapipe's 65,535 (WEBGPU.md
	// trap 2). It allows 8.4M slots, about 137G gradient elements.
	gradNormMaxTrips = 32768
	// GradNormClipFloats is the length of the clip buffer: the global norm
	// and the clip scale.
	GradNormClipFloats = 2
)

var (
	gradNormSrc     = own("gradnorm")
	gradNormSubs    = map[string]string{"WG": fmt.Sprint(gradNormWG), "VPI": fmt.Sprint(gradNormVPI)}
	kGradNormSquare = kernel("gradnorm", "squares",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, gradNormSubs)
	kGradNormFinal = kernel("gradnorm", "finalize",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, gradNormSubs)
)

// GradNormSlots returns the number of partials slots a gradient tensor of n
// elements owns: one per GradNormChunk elements, 0 for an empty tensor.
func GradNormSlots(n int) int { return (n + GradNormChunk - 1) / GradNormChunk }

// GradNormPlan lays out the partials buffer for gradient tensors of the
// given sizes: first[i] is the slot to pass to GradNormSquares for tensor
// i, and total the number of partials to allocate and to finalize over.
func GradNormPlan(sizes []int) (first []int, total int) {
	first = make([]int, len(sizes))
	for i, n := range sizes {
		first[i] = total
		total += GradNormSlots(n)
	}
	return first, total
}

// GradNormSquares records the sums of squares of the gradient g (n) into
// partials[slot : slot+GradNormSlots(n)] (nPartials), one slot per
// GradNormChunk elements. Every slot is overwritten, so partials needs no
// clearing between steps. Tensors larger than the device's storage binding
// limit are processed in chunks of whole slots.
func GradNormSquares(r *gpu.Recorder, partials *gpu.Buffer, slot int, g *gpu.Buffer, n int) error {
	d := r.Device()
	slots := GradNormSlots(n)
	if n < 0 || slot < 0 {
		return fmt.Errorf("gradnorm/squares %s: negative size %d or slot %d", g.Name, n, slot)
	}
	if uint64(4*n) > g.Size {
		return fmt.Errorf("gradnorm/squares: gradient %s holds %d bytes, %d elements need %d", g.Name, g.Size, n, 4*n)
	}
	if uint64(4*(slot+slots)) > partials.Size {
		return fmt.Errorf("gradnorm/squares %s: slots [%d, %d) overflow partials %s of %d floats",
			g.Name, slot, slot+slots, partials.Name, partials.Size/4)
	}
	p, err := d.Pipeline(kGradNormSquare)
	if err != nil {
		return err
	}
	chunk := adamwChunk(d)
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		grid := adamwGrid(d, GradNormSlots(m))
		err := r.Dispatch(p, grid, float64(2*m), gpu.Params(uint32(m), grid.X, uint32(slot+off/GradNormChunk), uint32(0)),
			partials.Arg(), g.Range(uint64(4*off), adamwBindBytes(m)))
		if err != nil {
			return fmt.Errorf("gradnorm %s: %w", g.Name, err)
		}
	}
	return nil
}

// GradNormFinalize records the global norm sqrt(sum(partials[:nPartials]))
// into clip[0] and the clip scale min(1, maxNorm/(norm+1e-6)) into clip[1]
// (GradNormClipFloats). A NaN or infinite norm is written as it is, with a
// scale of 0, and makes AdamW skip the step; the trainer reads clip[0] at
// log intervals to report it.
func GradNormFinalize(r *gpu.Recorder, clip, partials *gpu.Buffer, nPartials int, maxNorm float32) error {
	d := r.Device()
	if nPartials < 0 || nPartials > gradNormWG*gradNormMaxTrips {
		return fmt.Errorf("gradnorm/finalize: %d partials outside 0..%d", nPartials, gradNormWG*gradNormMaxTrips)
	}
	if uint64(4*nPartials) > partials.Size {
		return fmt.Errorf("gradnorm/finalize: partials %s holds %d floats, %d requested", partials.Name, partials.Size/4, nPartials)
	}
	if clip.Size < 4*GradNormClipFloats {
		return fmt.Errorf("gradnorm/finalize: clip buffer %s holds %d bytes, needs %d", clip.Name, clip.Size, 4*GradNormClipFloats)
	}
	if !(maxNorm > 0) {
		return fmt.Errorf("gradnorm/finalize: max norm %v must be positive", maxNorm)
	}
	p, err := d.Pipeline(kGradNormFinal)
	if err != nil {
		return err
	}
	return r.Dispatch(p, gpu.Grid{X: 1, Y: 1, Z: 1}, float64(nPartials+gradNormWG),
		gpu.Params(uint32(nPartials), maxNorm), clip.Range(0, 16), partials.Arg())
}
