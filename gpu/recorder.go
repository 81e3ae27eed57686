package gpu

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
)

// traceSubmissions prints every submission's kernels and wall time to
// stderr when STEP_GPU_TRACE is set: the way to find which submission
// approaches the 5 s watchdog.
var traceSubmissions = os.Getenv("STEP_GPU_TRACE") != ""

// Grid is a dispatch size in workgroups.
type Grid struct{ X, Y, Z uint32 }

// Grid1D returns the workgroup grid covering n items with workgroups of wg
// items, folded into two dimensions when the count exceeds the device's
// per-dimension limit. Kernels recover the linear workgroup index as
// wid.y * nwg.x + wid.x and must guard against the overshoot of the fold.
func (d *Device) Grid1D(n, wg int) Grid {
	groups := uint32((n + wg - 1) / wg)
	if groups == 0 {
		groups = 1
	}
	return FoldGrid(groups, d.Limits.MaxComputeWorkgroupsPerDimension)
}

// FoldGrid folds a 1-D workgroup count into X x Y with X <= max.
func FoldGrid(groups, max uint32) Grid {
	if groups <= max {
		return Grid{groups, 1, 1}
	}
	y := (groups + max - 1) / max
	x := (groups + y - 1) / y
	return Grid{x, y, 1}
}

// DefaultMaxDispatches bounds the dispatches in one submission regardless of
// their estimated work, so a run of tiny kernels cannot build a submission
// whose overhead alone nears the watchdog (~40 us each on lavapipe).
const DefaultMaxDispatches = 4096

// Recorder records dispatches and copies into one command encoder and
// submits them when the estimated work would pass the device's SubmitBudget
// or the dispatch cap, so that no single submission runs long enough to trip
// the 5 s watchdog. Flush submits what is left and waits for it.
type Recorder struct {
	d     *Device
	enc   *wgpu.CommandEncoder
	pass  *wgpu.ComputePassEncoder
	work  float64
	n     int
	names []string

	// MaxDispatches caps the dispatches of one submission.
	MaxDispatches int
	// Submissions counts the submissions made so far.
	Submissions int
	// Dispatches counts the dispatches recorded so far.
	Dispatches int
}

// NewRecorder returns an empty recorder on the device.
func (d *Device) NewRecorder() *Recorder {
	return &Recorder{d: d, MaxDispatches: DefaultMaxDispatches}
}

// Device returns the recorder's device.
func (r *Recorder) Device() *Device { return r.d }

func (r *Recorder) encoder() (*wgpu.CommandEncoder, error) {
	if r.enc == nil {
		enc, err := r.d.dev.CreateCommandEncoder(nil)
		if err != nil {
			return nil, fmt.Errorf("command encoder: %w", err)
		}
		r.enc = enc
	}
	return r.enc, nil
}

func (r *Recorder) endPass() error {
	if r.pass == nil {
		return nil
	}
	err := r.pass.End()
	r.pass.Release()
	r.pass = nil
	if err != nil {
		return fmt.Errorf("compute pass (%s): %w", r.kernels(), err)
	}
	return nil
}

func (r *Recorder) kernels() string {
	seen := map[string]bool{}
	var out []string
	for _, n := range r.names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("and %d more", len(out)-8))
	}
	return strings.Join(out, ", ")
}

// Dispatch records one dispatch of pipeline p over grid g. work is the
// estimated floating-point operations of the dispatch (for elementwise
// kernels, a few per element), used to bound submissions. params are the
// uniform bytes from Params (nil if the kernel has no uniform).
func (r *Recorder) Dispatch(p *Pipeline, g Grid, work float64, params []byte, args ...Arg) error {
	lim := r.d.Limits.MaxComputeWorkgroupsPerDimension
	if g.X == 0 || g.Y == 0 || g.Z == 0 || g.X > lim || g.Y > lim || g.Z > lim {
		return fmt.Errorf("%s: grid %dx%dx%d outside 1..%d per dimension", p.Name, g.X, g.Y, g.Z, lim)
	}
	cold := !p.warm
	if r.n > 0 && (cold || r.work+work > r.d.SubmitBudget || r.n >= r.MaxDispatches) {
		if err := r.Flush(); err != nil {
			return err
		}
	}
	bg, err := r.d.bindGroup(p, params, args)
	if err != nil {
		return err
	}
	enc, err := r.encoder()
	if err != nil {
		return err
	}
	if r.pass == nil {
		r.pass = enc.BeginComputePass(nil)
	}
	r.pass.SetPipeline(p.p)
	r.pass.SetBindGroup(0, bg, nil)
	r.pass.DispatchWorkgroups(g.X, g.Y, g.Z)
	r.work += work
	r.n++
	r.Dispatches++
	r.names = append(r.names, p.Name)
	if cold {
		// A first use compiles the pipeline inside this submission: submit
		// it alone, so the compile time does not add to a full budget.
		p.warm = true
		return r.Flush()
	}
	if r.d.Profile != nil {
		start := time.Now()
		err := r.Flush()
		r.d.Profile.add(p.Name, time.Since(start), work)
		return err
	}
	return nil
}

// Copy records a buffer-to-buffer copy of size bytes.
func (r *Recorder) Copy(dst *Buffer, dstOff uint64, src *Buffer, srcOff, size uint64) error {
	if err := r.endPass(); err != nil {
		return err
	}
	enc, err := r.encoder()
	if err != nil {
		return err
	}
	if err := enc.CopyBufferToBuffer(src.buf, srcOff, dst.buf, dstOff, size); err != nil {
		return fmt.Errorf("copy %s -> %s: %w", src.Name, dst.Name, err)
	}
	r.names = append(r.names, "copy")
	return nil
}

// Clear records zero-filling size bytes of a buffer from offset off.
func (r *Recorder) Clear(b *Buffer, off, size uint64) error {
	if err := r.endPass(); err != nil {
		return err
	}
	enc, err := r.encoder()
	if err != nil {
		return err
	}
	if err := enc.ClearBuffer(b.buf, off, size); err != nil {
		return fmt.Errorf("clear %s: %w", b.Name, err)
	}
	r.names = append(r.names, "clear")
	return nil
}

// Discard drops what was recorded and not yet submitted, releasing its
// encoder, and takes its dispatches off Dispatches; use it when a recording
// is abandoned after an error, instead of Flush. The recorder stays usable.
// What earlier submissions (by the budget, or a pipeline's first use) ran
// is not undone.
func (r *Recorder) Discard() {
	if r.enc == nil {
		return
	}
	if r.pass != nil {
		_ = r.pass.End() // an error here only describes the abandoned work
		r.pass.Release()
		r.pass = nil
	}
	r.enc.Release()
	r.Dispatches -= r.n // they never ran
	r.enc, r.n, r.work, r.names = nil, 0, 0, nil
}

// Flush submits everything recorded and waits until the device finishes it.
func (r *Recorder) Flush() error {
	if r.enc == nil {
		return nil
	}
	if err := r.endPass(); err != nil {
		r.enc.Release()
		r.enc, r.n, r.work, r.names = nil, 0, 0, nil
		return err
	}
	enc := r.enc
	what := r.kernels()
	r.enc, r.n, r.work, r.names = nil, 0, 0, nil
	r.Submissions++
	return r.d.finishAndWait(enc, what)
}

// finishAndWait finishes an encoder, submits it and waits until the queue
// has executed it (see wait).
func (d *Device) finishAndWait(enc *wgpu.CommandEncoder, what string) error {
	cb, err := enc.Finish(nil)
	enc.Release()
	if err != nil {
		return fmt.Errorf("finish commands (%s): %w", what, err)
	}
	if traceSubmissions {
		fmt.Fprintf(os.Stderr, "gpu: submit (%s)\n", what)
	}
	start := time.Now()
	d.pendingWrites = 0
	d.queue.Submit(cb)
	cb.Release()
	err = d.wait(what)
	if traceSubmissions {
		fmt.Fprintf(os.Stderr, "gpu: done in %.1f ms\n", float64(time.Since(start).Microseconds())/1e3)
	}
	return err
}

// MaxWait is how long wait lets one submission run before it reports the
// device as hung.
var MaxWait = 10 * time.Minute

// wait polls the device without blocking until every submission is done.
//
// wgpu's blocking poll gives up after 5 s, and on lavapipe the queue thread
// then crashes the process (WEBGPU.md trap 1); measured here, the same
// submissions complete normally when the wait is a loop of non-blocking
// polls, so step-gpu never blocks inside wgpu. The loop spins briefly (a
// short submission finishes in tens of microseconds), then sleeps with a
// backoff capped at 1 ms.
func (d *Device) wait(what string) error {
	start := time.Now()
	sleep := 10 * time.Microsecond
	for spins := 0; ; spins++ {
		if d.dev.Poll(false, nil) {
			break
		}
		if err := d.Lost(); err != nil {
			return fmt.Errorf("submission (%s): %w", what, err)
		}
		if time.Since(start) > MaxWait {
			return fmt.Errorf("submission (%s) still running after %v: the device looks hung", what, MaxWait)
		}
		if spins < 50 {
			runtime.Gosched()
			continue
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, time.Millisecond)
	}
	if err := d.Lost(); err != nil {
		return fmt.Errorf("submission (%s): %w", what, err)
	}
	return nil
}

// Sync waits for every submitted command to finish.
func (d *Device) Sync() error { return d.wait("sync") }

// FlushWrites submits pending queue writes (uploads are staged until the next
// submission) and waits for them to land.
func (d *Device) FlushWrites() error {
	d.pendingWrites = 0
	d.queue.Submit()
	return d.wait("queued writes")
}

// Profile accumulates wall time per kernel when set on a Device: every
// dispatch then gets its own submission (slower overall, but each kernel is
// timed alone). It is how step-gpu finds where a training step's time goes.
type Profile struct {
	Kernels map[string]*KernelTime
}

// KernelTime is one kernel's accumulated time.
type KernelTime struct {
	Name  string
	Calls int
	Time  time.Duration
	Work  float64
}

// NewProfile returns an empty profile.
func NewProfile() *Profile { return &Profile{Kernels: map[string]*KernelTime{}} }

func (p *Profile) add(name string, d time.Duration, work float64) {
	k := p.Kernels[name]
	if k == nil {
		k = &KernelTime{Name: name}
		p.Kernels[name] = k
	}
	k.Calls++
	k.Time += d
	k.Work += work
}

// CopyToTexture records a copy of a w x h texel region from src into dst at
// texel (0, 0): texel (x, y) receives the 16 bytes at byte offset off +
// y*rowBytes + 16*x of src. WebGPU requires off to be a multiple of 16 and
// rowBytes of 256; both are checked here so that the error names the copy.
// On lavapipe this is a driver copy, tens of times faster than a kernel that
// reads the buffer (every storage load is a per-lane loop there).
func (r *Recorder) CopyToTexture(dst *Texture, src *Buffer, off, rowBytes uint64, w, h uint32) error {
	switch {
	case src == nil || dst == nil:
		return fmt.Errorf("copy to texture: no source buffer or destination texture")
	case rowBytes > math.MaxUint32:
		return fmt.Errorf("copy %s -> texture %s: row pitch %d over 4 GiB", src.Name, dst.Name, rowBytes)
	case off%16 != 0 || rowBytes%256 != 0:
		return fmt.Errorf("copy %s -> texture %s: offset %d must be a multiple of 16 and row pitch %d of 256",
			src.Name, dst.Name, off, rowBytes)
	case w == 0 || h == 0 || w > dst.W || h > dst.H:
		return fmt.Errorf("copy %s -> texture %s: region %dx%d outside the texture's %dx%d",
			src.Name, dst.Name, w, h, dst.W, dst.H)
	case uint64(w)*16 > rowBytes || off+uint64(h-1)*rowBytes+uint64(w)*16 > src.Size:
		return fmt.Errorf("copy %s -> texture %s: region %dx%d at offset %d, pitch %d reads past the buffer's %d bytes",
			src.Name, dst.Name, w, h, off, rowBytes, src.Size)
	}
	if err := r.endPass(); err != nil {
		return err
	}
	enc, err := r.encoder()
	if err != nil {
		return err
	}
	if err := enc.CopyBufferToTexture(
		&wgpu.ImageCopyBuffer{Buffer: src.buf, Layout: wgpu.TextureDataLayout{Offset: off, BytesPerRow: uint32(rowBytes), RowsPerImage: h}},
		&wgpu.ImageCopyTexture{Texture: dst.tex},
		&wgpu.Extent3D{Width: w, Height: h, DepthOrArrayLayers: 1}); err != nil {
		return fmt.Errorf("copy %s -> texture %s: %w", src.Name, dst.Name, err)
	}
	r.names = append(r.names, "copy_to_texture")
	return nil
}
