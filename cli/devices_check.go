package cli

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/step-gpu/step-gpu/shaders"
)

// deviceCheck is what `step-gpu devices --check` found on the chosen
// adapter.
type deviceCheck struct {
	Adapter             string        `json:"adapter"`
	StorageTextures     bool          `json:"storage_textures"`
	StorageTexturesNote string        `json:"storage_textures_note,omitempty"`
	Pipelines           int           `json:"pipelines"`
	PipelineSeconds     float64       `json:"pipelines_s"`
	Matmul              string        `json:"matmul"`
	Results             []checkResult `json:"results"`
	OK                  bool          `json:"ok"`
	Error               string        `json:"error,omitempty"`
}

// checkResult is one kernel's result against the float64 reference.
type checkResult struct {
	Name   string  `json:"name"`
	MaxErr float64 `json:"max_abs_err"`
	OK     bool    `json:"ok"`
}

// checkTol bounds the checks' errors. Their inputs are uniform in [-1, 1]
// and their sums at most 131 terms long, so fp32 kernels land near 1e-6;
// a kernel that is wrong on a device (a lost term, a misread texel, a race)
// is off by 1e-2 or more.
var checkTol = tol.Tol{Atol: 1e-4, Rtol: 1e-4}

// checkDevice opens the adapter the flags select and proves step-gpu works
// on it: whether storage textures are usable, every kernel's pipeline, the
// matmul path the probe picks, and matmuls in each layout and attention
// forward and backward, on odd and on aligned shapes, against the float64
// reference. It returns what it found even with an error.
func checkDevice(e *Env) (*deviceCheck, error) {
	c := &deviceCheck{Results: []checkResult{}}
	d, err := e.open()
	if err != nil {
		return c, err
	}
	defer d.Close()
	defer shaders.ReleaseMatmulTextures(d)
	c.Adapter = d.Info.Name
	start := time.Now()
	c.Pipelines, err = shaders.CompileAll(d)
	c.PipelineSeconds = time.Since(start).Seconds()
	// A storage-texture kernel that failed to build leaves the kernels on
	// sampled textures and buffers, as training would: report it, go on.
	c.StorageTextures, c.StorageTexturesNote = shaders.StorageTexturesUsable(d)
	if err != nil {
		return c, fmt.Errorf("create pipelines: %w", err)
	}
	if _, err := shaders.MatmulPathOf(d); err != nil {
		return c, err
	}
	c.Matmul = shaders.MatmulReport(d)
	rng := rand.New(rand.NewPCG(5, 6))
	// An odd shape (packed operands) and a 64-aligned one (copied).
	for _, s := range [][3]int{{67, 45, 131}, {64, 128, 192}} {
		M, N, K := s[0], s[1], s[2]
		a, b := checkRand(rng, M*K), checkRand(rng, K*N)
		for _, l := range []shaders.Layout{shaders.NN, shaders.NT, shaders.TN} {
			got, err := checkRun(d, M*N, [][]float32{a, b}, func(r *gpu.Recorder, out *gpu.Buffer, in []*gpu.Buffer) error {
				return shaders.Matmul(r, out, in[0], in[1], M, N, K, l, false)
			})
			if err != nil {
				return c, err
			}
			c.add(fmt.Sprintf("matmul %v %dx%dx%d", l, M, N, K), got, ref.Matmul(tol.F64(a), tol.F64(b), M, N, K, ref.MatmulLayout(l)))
		}
	}
	// A partial block of rows (packed textures on CPU adapters) and B*T a
	// multiple of 4 with C a multiple of 64 (copied), both at HS 64.
	for _, s := range [][4]int{{2, 37, 2, 64}, {2, 32, 2, 64}} {
		if err := c.attention(d, rng, s[0], s[1], s[2], s[3]); err != nil {
			return c, err
		}
	}
	c.StorageTextures, c.StorageTexturesNote = shaders.StorageTexturesUsable(d)
	c.OK = true
	for _, r := range c.Results {
		c.OK = c.OK && r.OK
	}
	return c, nil
}

// attention runs an attention forward and backward and compares out, dq,
// dk and dv with the reference.
func (c *deviceCheck) attention(d *gpu.Device, rng *rand.Rand, B, T, NH, HS int) error {
	n := B * T * NH * HS
	q, k, v, g := checkRand(rng, n), checkRand(rng, n), checkRand(rng, n), checkRand(rng, n)
	bufs := map[string]*gpu.Buffer{}
	defer func() {
		for _, b := range bufs {
			b.Release()
		}
	}()
	for name, data := range map[string][]float32{"q": q, "k": k, "v": v, "dout": g} {
		b, err := d.NewBufferF32("check "+name, gpu.CatScratch, data)
		if err != nil {
			return err
		}
		bufs[name] = b
	}
	for name, size := range map[string]int{"out": n, "lse": B * NH * T, "dq": n, "dk": n, "dv": n} {
		b, err := d.NewBuffer("check "+name, gpu.CatScratch, uint64(4*size))
		if err != nil {
			return err
		}
		bufs[name] = b
	}
	r := d.NewRecorder()
	if err := shaders.AttentionForward(r, bufs["out"], bufs["lse"], bufs["q"], bufs["k"], bufs["v"], B, T, NH, HS); err != nil {
		r.Discard()
		return err
	}
	if err := shaders.AttentionBackward(r, bufs["dq"], bufs["dk"], bufs["dv"], bufs["dout"], bufs["q"], bufs["k"], bufs["v"],
		bufs["out"], bufs["lse"], B, T, NH, HS); err != nil {
		r.Discard()
		return err
	}
	if err := r.Flush(); err != nil {
		return err
	}
	wantOut, _ := ref.AttentionForward(tol.F64(q), tol.F64(k), tol.F64(v), B, T, NH, HS)
	wdq, wdk, wdv := ref.AttentionBackward(tol.F64(g), tol.F64(q), tol.F64(k), tol.F64(v), B, T, NH, HS)
	for _, x := range []struct {
		name string
		want []float64
	}{{"out", wantOut}, {"dq", wdq}, {"dk", wdk}, {"dv", wdv}} {
		got, err := bufs[x.name].ReadF32(0, n)
		if err != nil {
			return err
		}
		c.add(fmt.Sprintf("attention %s B%d T%d", x.name, B, T), got, x.want)
	}
	return nil
}

// add records one comparison.
func (c *deviceCheck) add(name string, got []float32, want []float64) {
	rep := tol.Compare(got, want, checkTol)
	c.Results = append(c.Results, checkResult{Name: name, MaxErr: rep.MaxAbs, OK: rep.Bad == 0})
}

// checkRun uploads the inputs, records one op into a fresh output of n
// floats, and reads the output back.
func checkRun(d *gpu.Device, n int, inputs [][]float32, op func(*gpu.Recorder, *gpu.Buffer, []*gpu.Buffer) error) ([]float32, error) {
	var bufs []*gpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Release()
		}
	}()
	for i, x := range inputs {
		b, err := d.NewBufferF32(fmt.Sprintf("check input %d", i), gpu.CatScratch, x)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, b)
	}
	out, err := d.NewBuffer("check output", gpu.CatScratch, uint64(4*n))
	if err != nil {
		return nil, err
	}
	defer out.Release()
	r := d.NewRecorder()
	if err := op(r, out, bufs); err != nil {
		r.Discard()
		return nil, err
	}
	if err := r.Flush(); err != nil {
		return nil, err
	}
	return out.ReadF32(0, n)
}

// checkRand returns n values uniform in [-1, 1).
func checkRand(rng *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = 2*rng.Float32() - 1
	}
	return out
}

// print writes the check as text.
func (c *deviceCheck) print(e *Env) {
	w := e.Stdout
	if c.Adapter == "" {
		fmt.Fprintf(w, "check: %s\n", c.Error)
		return
	}
	fmt.Fprintf(w, "check %s:\n", c.Adapter)
	if c.StorageTextures {
		fmt.Fprintln(w, "  read-only storage textures: yes (probe kernel passed, no kernel failed)")
	} else {
		fmt.Fprintf(w, "  read-only storage textures: no (%s)\n", c.StorageTexturesNote)
	}
	fmt.Fprintf(w, "  pipelines created: %d in %.2f s (lazy backends such as lavapipe compile at first dispatch)\n",
		c.Pipelines, c.PipelineSeconds)
	if c.Matmul != "" {
		fmt.Fprintf(w, "  %s\n", c.Matmul)
	}
	for _, r := range c.Results {
		verdict := "ok"
		if !r.OK {
			verdict = "WRONG"
		}
		fmt.Fprintf(w, "  %-27s max |err| vs float64 reference %.2g: %s\n", r.Name, r.MaxErr, verdict)
	}
	switch {
	case c.Error != "":
		fmt.Fprintf(w, "  failed: %s\n", c.Error)
	case c.OK:
		fmt.Fprintln(w, "  ok: step-gpu can train on this adapter")
	}
}
