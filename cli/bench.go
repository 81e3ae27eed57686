package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// BenchCmd measures kernel throughput.
type BenchCmd struct {
	Preset string `help:"Model config whose shapes to measure (${presets})." default:"d512"`
	Op     string `help:"Measure only ops whose name contains this (e.g. matmul, attention, adamw; checkpoint runs only when named; 'share' measures the training step's share of the matmul kernel's speed)."`
	M      int    `help:"Matmul rows (with --n and --k: measure this one matmul shape instead of the preset's)."`
	N      int    `help:"Matmul columns."`
	K      int    `help:"Matmul inner size."`
	Reps   int    `help:"Timed repetitions; the median is reported." default:"5"`
	JSON   bool   `help:"Print one JSON object per measurement."`
}

// Measurement is one benchmark result.
type Measurement struct {
	Op     string  `json:"op"`
	Shape  string  `json:"shape"`
	MS     float64 `json:"ms"`
	GFLOPS float64 `json:"gflops,omitempty"`
	GBPS   float64 `json:"gbps,omitempty"`
	// Share is the training step's GFLOP/s over the matmul kernel's at the
	// model's shapes (op train_step_share only).
	Share float64 `json:"share,omitempty"`
	Note  string  `json:"note,omitempty"`
}

// benchCase is one op at one shape: setup allocates and returns a record
// function (one execution of the op), the FLOPs and bytes it moves, and a
// release function.
type benchCase struct {
	op, shape string
	// items and unit, when set, add a rate to the note (e.g. tokens/s).
	items float64
	unit  string
	setup func(d *gpu.Device) (record func(r *gpu.Recorder) error, flops, bytes float64, release func(), err error)
}

// Run measures every selected case and prints a table or JSON lines.
func (c *BenchCmd) Run(e *Env) error {
	cfg, err := nn.Preset(c.Preset)
	if err != nil {
		return err
	}
	d, err := e.open()
	if err != nil {
		return err
	}
	defer d.Close()
	cases := benchCases(cfg, c)
	if c.Op == benchShareOp {
		cases = shareCases(cfg, c)
	}
	if len(cases) == 0 {
		return fmt.Errorf("no benchmark op matches %q (ops: %s)", c.Op, strings.Join(benchOpNames(cfg, c), ", "))
	}
	if !c.JSON {
		fmt.Fprintf(e.Stdout, "%-22s %-28s %10s %10s %10s\n", "op", "shape", "ms", "GFLOP/s", "GB/s")
	}
	var all []Measurement
	for _, bc := range cases {
		m, err := measure(d, bc, max(1, c.Reps))
		if err != nil {
			return fmt.Errorf("bench %s %s: %w", bc.op, bc.shape, err)
		}
		all = append(all, m)
		if err := c.print(e, m); err != nil {
			return err
		}
	}
	if s := shaders.MatmulReport(d); s != "" {
		fmt.Fprintln(e.Stderr, s)
	}
	if c.Op != benchShareOp {
		return nil
	}
	m, err := shareOf(all)
	if err != nil {
		return err
	}
	return c.print(e, m)
}

// print writes one measurement as a table row or a JSON line.
func (c *BenchCmd) print(e *Env, m Measurement) error {
	if c.JSON {
		return json.NewEncoder(e.Stdout).Encode(m)
	}
	_, err := fmt.Fprintf(e.Stdout, "%-22s %-28s %10.3f %10s %10s %s\n", m.Op, m.Shape, m.MS, opt(m.GFLOPS), opt(m.GBPS), m.Note)
	return err
}

func opt(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// measure runs one case: a warm-up execution (compiles pipelines, builds
// bind groups), then reps timed runs of enough executions to last ~0.2 s,
// each recorded into one recorder (split by the submission budget) and
// flushed. The median per-execution time is reported.
func measure(d *gpu.Device, bc benchCase, reps int) (Measurement, error) {
	record, flops, bytes, release, err := bc.setup(d)
	if err != nil {
		return Measurement{}, err
	}
	defer release()
	run := func(iters int) (time.Duration, error) {
		r := d.NewRecorder()
		start := time.Now()
		for range iters {
			if err := record(r); err != nil {
				return 0, err
			}
		}
		err := r.Flush()
		return time.Since(start), err
	}
	first, err := run(1)
	if err != nil {
		return Measurement{}, err
	}
	one, err := run(1)
	if err != nil {
		return Measurement{}, err
	}
	_ = first
	iters := int(200*time.Millisecond/max(one, time.Microsecond)) + 1
	iters = min(iters, 1000)
	times := make([]float64, 0, reps)
	for range reps {
		el, err := run(iters)
		if err != nil {
			return Measurement{}, err
		}
		times = append(times, el.Seconds()/float64(iters))
	}
	sort.Float64s(times)
	sec := times[len(times)/2]
	m := Measurement{Op: bc.op, Shape: bc.shape, MS: sec * 1e3}
	if flops > 0 {
		m.GFLOPS = flops / sec / 1e9
	}
	if bytes > 0 {
		m.GBPS = bytes / sec / 1e9
	}
	if bc.items > 0 {
		m.Note = fmt.Sprintf("%.0f %s/s", bc.items/sec, bc.unit)
	}
	return m, nil
}

func benchOpNames(cfg nn.Config, c *BenchCmd) []string {
	seen := map[string]bool{}
	var out []string
	all := *c
	all.Op = ""
	for _, bc := range benchCases(cfg, &all) {
		if !seen[bc.op] {
			seen[bc.op] = true
			out = append(out, bc.op)
		}
	}
	return out
}

// benchCases lists the cases for a config, filtered by --op.
func benchCases(cfg nn.Config, c *BenchCmd) []benchCase {
	var all []benchCase
	for _, gen := range benchGenerators {
		all = append(all, gen(cfg, c)...)
	}
	var out []benchCase
	for _, bc := range all {
		if c.Op == "" || strings.Contains(bc.op, c.Op) {
			out = append(out, bc)
		}
	}
	return out
}

// benchGenerators produce the cases of each kernel family.
var benchGenerators []func(cfg nn.Config, c *BenchCmd) []benchCase

func randBuffer(d *gpu.Device, name string, n int, scale float32, rng *rand.Rand) (*gpu.Buffer, error) {
	data := make([]float32, n)
	for i := range data {
		data[i] = (rng.Float32()*2 - 1) * scale
	}
	return d.NewBufferF32(name, gpu.CatScratch, data)
}

// buffers allocates random buffers of the given sizes and returns them with
// one release function for all.
func buffers(d *gpu.Device, sizes ...int) ([]*gpu.Buffer, func(), error) {
	rng := rand.New(rand.NewPCG(7, 7))
	var out []*gpu.Buffer
	release := func() {
		for _, b := range out {
			b.Release()
		}
	}
	for i, n := range sizes {
		b, err := randBuffer(d, fmt.Sprintf("bench%d", i), n, 1, rng)
		if err != nil {
			release()
			return nil, nil, err
		}
		out = append(out, b)
	}
	return out, release, nil
}
