package repro

import (
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// reproCorpus writes a small deterministic corpus of Go-like documents,
// enough for a tokenizer and a validation split.
func reproCorpus(t *testing.T) string {
	dir := t.TempDir()
	for i := range 40 {
		var b strings.Builder
		for j := range 30 {
			fmt.Fprintf(&b, "func g%d_%d(y int) int { return y*%d - %d }\n", i, j, (i*5+j)%11, j%7)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("doc%02d.go", i)), []byte(b.String()), 0o644))
	}
	return dir
}

// tinyConfig is a reproduction of a 3-layer model trained for 6 steps per
// method: vanilla, STEP-2, STEP-3 and two STEP-3 ablations.
func tinyConfig(t *testing.T) Config {
	return Config{
		Base: step.Options{
			Model:       nn.Config{V: 300, C: 16, L: 3, NH: 2, H: 40, T: 16, B: 2, RoPE: 10000, NormEps: 1e-5},
			Data:        reproCorpus(t),
			Steps:       6,
			TotalBatch:  32,
			LR:          3e-3,
			EvalBatches: 2,
			EvalEvery:   2,
			LoRARank:    4,
			Shuffle:     true,
		},
		Out:            filepath.Join(t.TempDir(), "repro"),
		Stages:         []int{2, 3},
		Ablations:      []string{"no-lora", "frozen-f32"},
		AblationStages: 3,
	}
}

// TestMethods checks the method list and its errors for bad flags.
func TestMethods(t *testing.T) {
	ms, err := Methods([]int{2, 3}, nil, 3)
	require.NoError(t, err)
	require.Equal(t, []string{"vanilla", "step-2", "step-3"}, names(ms))

	ms, err = Methods([]int{3}, []string{"all"}, 3)
	require.NoError(t, err)
	require.Len(t, ms, 2+len(Ablations))
	require.Equal(t, "step-3-copy", ms[2].Name)
	require.Equal(t, step.OpCopy, ms[2].Operator)
	require.Equal(t, step.PosUpper, ms[2].Position)
	require.Equal(t, "STEP-3 intermediate", ms[5].Label)
	require.Equal(t, step.OpMean, ms[5].Operator)
	require.Equal(t, step.PosIntermediate, ms[5].Position)
	require.True(t, ms[len(ms)-1].FrozenF32)
	require.True(t, ms[len(ms)-2].NoLoRA)

	for _, c := range []struct {
		stages    []int
		ablations []string
		K         int
		want      string
	}{
		{[]int{1}, nil, 3, "at least 2 stages, got 1"},
		{[]int{0}, nil, 3, "at least 2 stages, got 0"},
		{[]int{2, 2}, nil, 3, "2 is listed twice"},
		{nil, nil, 3, "at least one STEP stage count"},
		{[]int{2}, []string{"splice"}, 3, `unknown ablation "splice"`},
		{[]int{2}, []string{"copy", "copy"}, 3, "copy is listed twice"},
		{[]int{2}, []string{"all", "copy"}, 3, "give it alone"},
		{[]int{2}, []string{"copy"}, 1, "at least 2 stages, got 1"},
	} {
		_, err := Methods(c.stages, c.ablations, c.K)
		require.ErrorContainsf(t, err, c.want, "%v %v %d", c.stages, c.ablations, c.K)
	}
}

func names(ms []Method) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// TestPrepare checks the shared options: every method trains the same
// steps, the no-LoRA ablation keeps the split with adapters, and a stage
// count beyond the layers fails before anything runs.
func TestPrepare(t *testing.T) {
	c := tinyConfig(t)
	c.Base.Model.L = 8
	c.Base.Model.V = 512
	c.Base.Steps, c.Base.EvalEvery = 90, 0
	c.Ablations = []string{"no-lora", "stack"}
	base, methods, err := c.Prepare()
	require.NoError(t, err)
	require.Equal(t, 90, base.Steps)
	require.Equal(t, 9, base.EvalEvery, "about Evals evaluations")
	var split []int
	for _, m := range methods {
		o, err := m.Options(base, filepath.Join(c.Out, m.Name))
		require.NoError(t, err)
		require.Equal(t, 90, o.Steps, m.Name)
		require.Zero(t, o.SampleEvery)
		if m.Name == "step-3" {
			for _, s := range o.Stages {
				split = append(split, s.Added)
			}
		}
		if m.NoLoRA {
			var got []int
			for _, s := range o.Stages {
				got = append(got, s.Added)
				require.Zero(t, s.LoRARank)
			}
			require.Equal(t, split, got, "no-lora changes the adapters only")
		}
	}
	want, err := step.PaperModelOf(base.Model, 4).Split(3)
	require.NoError(t, err)
	require.Equal(t, want.Added, split)

	c.Stages = []int{9}
	_, _, err = c.Prepare()
	require.ErrorContains(t, err, "9 stages for 8 layers")
	c = tinyConfig(t)
	c.Out = ""
	_, _, err = c.Prepare()
	require.ErrorContains(t, err, "output folder")
}

// TestSummarise checks the reductions and the frozen-f32 difference on
// made-up numbers, and that the plots of such results are valid PNGs.
func TestSummarise(t *testing.T) {
	stage := func(paper int64, plan, model uint64, states map[string]uint64) step.StageMemory {
		return step.StageMemory{Stage: 1, Paper: paper, Plan: plan, Model: model, Measured: states}
	}
	rs := &Results{Methods: []Result{
		{Method: Vanilla, ValLoss: 2, Memory: []step.StageMemory{
			stage(1000, 4000, 4100, map[string]uint64{"params": 100, "grads": 100, "optstate": 200, "activations": 3000})}},
		{Method: STEP(2), ValLoss: 2.5, Memory: []step.StageMemory{
			stage(400, 2000, 2050, map[string]uint64{"params": 50, "grads": 50, "optstate": 100}),
			stage(600, 3000, 3075, map[string]uint64{"params": 100, "grads": 30, "optstate": 60, "lora": 10})}},
	}}
	f32, err := Ablation(2, "frozen-f32")
	require.NoError(t, err)
	rs.Methods = append(rs.Methods, Result{Method: f32, ValLoss: 2.25, Memory: rs.Methods[1].Memory})
	rs.summarise()
	v, s := rs.Methods[0], rs.Methods[1]
	require.Equal(t, Reductions{}, v.Reduction)
	require.Equal(t, int64(600), s.PaperMax)
	require.Equal(t, uint64(3000), s.PlanMax)
	require.Equal(t, uint64(3075), s.MeasuredMax)
	require.Equal(t, uint64(200), s.StatesMax)
	require.Equal(t, uint64(400), v.StatesMax)
	require.InDelta(t, 0.4, s.Reduction.Paper, 1e-12)
	require.InDelta(t, 0.25, s.Reduction.Plan, 1e-12)
	require.InDelta(t, 0.25, s.Reduction.Measured, 1e-12)
	require.InDelta(t, 0.5, s.Reduction.States, 1e-12)
	require.NotNil(t, rs.FrozenF32Delta)
	require.InDelta(t, -0.25, *rs.FrozenF32Delta, 1e-12)

	var b strings.Builder
	rs.PrintTable(&b)
	require.Contains(t, b.String(), "(-40.0%)", "paper column of STEP-2")
	require.Contains(t, b.String(), "validation loss -0.2500")

	dir := t.TempDir()
	for i := range rs.Methods {
		rs.Methods[i].Curve = []Point{{Tokens: 10, ValLoss: 5}, {Tokens: 20, ValLoss: 4 - float64(i)/10}}
	}
	rs.Methods[1].Growth = []int64{10}
	require.NoError(t, rs.Write(dir))
	checkPNG(t, filepath.Join(dir, LossPlot))
	checkPNG(t, filepath.Join(dir, MemoryPlot))
}

// checkPNG decodes a PNG file and checks that it has a sensible size.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err, path)
	require.Greater(t, img.Bounds().Dx(), 300, path)
	require.Greater(t, img.Bounds().Dy(), 200, path)
}

// TestRun runs a whole tiny reproduction on the device and checks the
// results: equal tokens for every method, the stage structure, the
// reductions recomputed from the reported numbers, the ledger against the
// plan in every stage of every method (so runs on one device do not leak
// memory into each other), the files written, and that a second run into
// the same folder is refused.
func TestRun(t *testing.T) {
	d := gputest.Device(t)
	c := tinyConfig(t)
	var log strings.Builder
	c.Log = &log
	rs, err := Run(d, c)
	require.NoError(t, err, log.String())
	require.Equal(t, []string{"vanilla", "step-2", "step-3", "step-3-no-lora", "step-3-frozen-f32"}, names(methodsOf(rs)))
	require.Equal(t, 6, rs.Steps)
	require.Equal(t, 300, rs.Model.V)
	v := rs.Methods[0]
	for _, r := range rs.Methods {
		require.Equal(t, int64(6*32), r.Tokens, "%s: every method trains the same tokens", r.Name)
		require.Equal(t, 6, r.Steps, r.Name)
		require.False(t, math.IsNaN(r.ValLoss), r.Name)
		require.InDelta(t, math.Exp(r.ValLoss), r.ValPPL, 1e-9*r.ValPPL)
		stages := max(1, r.Stages)
		require.Len(t, r.Memory, stages, r.Name)
		require.Len(t, r.Growth, stages-1, r.Name)
		if r.Stages > 0 {
			sum := 0
			for _, n := range r.Split {
				sum += n
			}
			require.Equal(t, 3, sum, r.Name)
			require.Len(t, r.Split, r.Stages, r.Name)
		}
		var paper int64
		var plan, model, states uint64
		for _, s := range r.Memory {
			require.InDeltaf(t, 0, s.Diff(), 0.01, "%s stage %d: ledger and plan differ by more than 1%%", r.Name, s.Stage)
			paper, plan, model, states = max(paper, s.Paper), max(plan, s.Plan), max(model, s.Model), max(states, States(s))
		}
		require.Equal(t, paper, r.PaperMax, r.Name)
		require.Equal(t, plan, r.PlanMax, r.Name)
		require.Equal(t, model, r.MeasuredMax, r.Name)
		require.Equal(t, states, r.StatesMax, r.Name)
		require.InDelta(t, 1-float64(r.PaperMax)/float64(v.PaperMax), r.Reduction.Paper, 1e-12, r.Name)
		require.InDelta(t, 1-float64(r.PlanMax)/float64(v.PlanMax), r.Reduction.Plan, 1e-12, r.Name)
		require.InDelta(t, 1-float64(r.MeasuredMax)/float64(v.MeasuredMax), r.Reduction.Measured, 1e-12, r.Name)
		require.InDelta(t, 1-float64(r.StatesMax)/float64(v.StatesMax), r.Reduction.States, 1e-12, r.Name)

		require.NotEmpty(t, r.Curve, r.Name)
		last := r.Curve[len(r.Curve)-1]
		require.Equal(t, r.Tokens, last.Tokens, r.Name)
		require.Equal(t, r.ValLoss, last.ValLoss, "%s: the final validation loss is the curve's last point", r.Name)
		for _, g := range r.Growth {
			_, ok := valAt(r.Curve, g)
			require.True(t, ok, "%s: an evaluation at the growth after %d tokens", r.Name, g)
		}
		require.FileExists(t, filepath.Join(r.RunDir, "train.log"))
		require.FileExists(t, filepath.Join(r.RunDir, "metrics.jsonl"))
	}
	require.Equal(t, int64(16*3)*int64(rs.Model.LayerParams()), v.PaperMax, "vanilla's paper figure is 16*L*P")
	require.Positive(t, rs.Find("step-3").Reduction.Paper)
	require.Zero(t, rs.Find("step-3-no-lora").Memory[2].Measured[gpu.CatLoRA.String()], "no adapters")
	require.Greater(t, rs.Find("step-3-frozen-f32").Memory[2].Measured[gpu.CatParams.String()],
		rs.Find("step-3").Memory[2].Measured[gpu.CatParams.String()], "frozen weights in f32 take more room")
	require.NotNil(t, rs.FrozenF32Delta)
	require.Equal(t, rs.Find("step-3-frozen-f32").ValLoss-rs.Find("step-3").ValLoss, *rs.FrozenF32Delta)

	// The files: the shared tokenizer, results.json equal to the returned
	// results, results.md and the plots.
	require.FileExists(t, step.TokenizerPath(c.Out))
	b, err := os.ReadFile(filepath.Join(c.Out, "results.json"))
	require.NoError(t, err)
	var back Results
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, *rs, back)
	md, err := os.ReadFile(filepath.Join(c.Out, "results.md"))
	require.NoError(t, err)
	for _, want := range []string{"| method | split |", "| STEP-3 no-lora |", "## Memory per stage", LossPlot} {
		require.Contains(t, string(md), want)
	}
	checkPNG(t, filepath.Join(c.Out, LossPlot))
	checkPNG(t, filepath.Join(c.Out, MemoryPlot))
	var table strings.Builder
	rs.PrintTable(&table)
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	require.Len(t, lines, 2+len(rs.Methods)+1, "setup, header, one row per method, the frozen-f32 line")
	require.True(t, strings.HasPrefix(lines[1], "method"))

	_, err = Run(d, c)
	require.ErrorContains(t, err, "already exists")
}

func methodsOf(rs *Results) []Method {
	var out []Method
	for _, r := range rs.Methods {
		out = append(out, r.Method)
	}
	return out
}
