package step

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/nn"
)

// stagedOptions is a three-stage run of a 3-layer model: 2 + 2 + 3
// trained steps, growing at half of the first two stages' planned steps,
// with a checkpoint every step and samples, so every code path of the stage
// runner runs in seconds.
func stagedOptions(t *testing.T, corpus string) Options {
	o := testOptions(t, corpus)
	o.Model.L = 3
	o.Steps, o.SaveEvery, o.Keep, o.SampleEvery, o.SampleTokens, o.EvalEvery = 0, 1, 0, 3, 4, 3
	o.LoRARank, o.LoRAAlpha = 4, 8
	o.Stages = []StageSpec{{Added: 1, Steps: 4, GrowAt: 0.5}, {Added: 1, Steps: 4, GrowAt: 0.5, Operator: OpMean, Position: PosUpper},
		{Added: 1, Steps: 3, Operator: OpCopy, Position: PosLower, LoRARank: 2}}
	o = o.Defaults()
	require.NoError(t, o.Validate())
	return o
}

// runLogged runs a trainer with a metrics file and returns the loss of
// every step it trained, keyed by step.
func runLogged(t *testing.T, tr *Trainer) map[int]float64 {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	var err error
	tr.Metrics, err = OpenMetrics(path)
	require.NoError(t, err)
	_, err = tr.Run()
	require.NoError(t, err)
	require.NoError(t, tr.Metrics.Close())
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[int]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m Metric
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		if m.Loss != 0 {
			out[m.Step] = m.Loss
		}
	}
	return out
}

// TestStagedRun checks a whole STEP run: the stage depths and layouts, the
// growth history in the checkpoints, stage checkpoints that are never
// pruned, and the memory report of every stage against the plan (the model
// buffers agree exactly; the issue asks for 1%).
func TestStagedRun(t *testing.T) {
	o := stagedOptions(t, writeCorpus(t))
	require.Equal(t, 7, o.Steps)
	tr := newTestTrainer(t, o)
	require.Equal(t, 1, tr.Model.Cfg.L)
	var log strings.Builder
	tr.Log = &log
	losses := runLogged(t, tr)
	require.Len(t, losses, 7)
	require.Equal(t, 3, tr.Stage)
	require.Equal(t, 3, tr.Model.Cfg.L)
	require.Equal(t, []bool{false, true, true}, tr.Model.Layout().Frozen, "stage 3 grew one layer at the bottom")
	require.Equal(t, 2, tr.Model.Layout().R)
	require.Len(t, tr.History, 2)
	require.Equal(t, map[string]string{"layers.0.": "layers.1.", "layers.1.": "layers.2."}, tr.History[1].Renames)
	require.Contains(t, log.String(), "growth: stage 2/3 starts at step 2: 1 -> 2 layers (mean at upper)")
	require.Contains(t, log.String(), "growth: stage 3/3 starts at step 4: 2 -> 3 layers (copy at lower)")

	require.Len(t, tr.Memory, 3)
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(line, "memory") {
			t.Log(line)
		}
	}
	for _, m := range tr.Memory {
		t.Logf("stage %d: model buffers %d bytes measured, %d planned (%+.3f%%), caches %d, paper %d", m.Stage, m.Model,
			m.Plan, 100*m.Diff(), m.Cache, m.Paper)
		require.InDelta(t, 0, m.Diff(), 0.01, "stage %d: ledger and plan differ by more than 1%%", m.Stage)
	}

	dir := CheckpointDir(o.RunDir)
	for _, n := range []string{"stage-2.ckpt", "stage-3.ckpt", "step-00000007.ckpt"} {
		_, err := os.Stat(filepath.Join(dir, n))
		require.NoError(t, err, n)
	}
	l, err := OpenCheckpoint(filepath.Join(dir, "stage-3.ckpt"))
	require.NoError(t, err)
	defer l.R.Close()
	h := l.R.Header
	require.Equal(t, 3, h.Stage)
	require.Equal(t, 0, h.StageStep)
	require.Len(t, h.Growth, 2)
	require.Equal(t, 2, l.Layout.FrozenCount())
	require.Equal(t, o.Model, l.Final())
	groups := map[checkpoints.Group]int{}
	for _, e := range h.Tensors {
		groups[e.Group]++
	}
	require.Equal(t, 2*9, groups[checkpoints.Frozen])
	require.Equal(t, 2*7*2, groups[checkpoints.LoRA])
}

// TestStagedResumeIsExact resumes a STEP run from the checkpoints a real
// run wrote (a stage's start, and mid-stage) and checks that every later
// loss equals the uninterrupted run's.
func TestStagedResumeIsExact(t *testing.T) {
	corpus := writeCorpus(t)
	o := stagedOptions(t, corpus)
	tr := newTestTrainer(t, o)
	tr.Log = io.Discard
	straight := runLogged(t, tr)
	dir := CheckpointDir(o.RunDir)
	for _, name := range []string{"stage-2.ckpt", "step-00000005.ckpt"} {
		t.Run(name, func(t *testing.T) {
			l, err := OpenCheckpoint(filepath.Join(dir, name))
			require.NoError(t, err)
			defer l.R.Close()
			o2 := o
			o2.RunDir = t.TempDir()
			tr2 := newTestTrainer(t, o2)
			tr2.Log = io.Discard
			require.NoError(t, tr2.Resume(l))
			from := tr2.Step
			resumed := runLogged(t, tr2)
			require.Len(t, resumed, 7-from)
			for s, v := range resumed {
				require.Equal(t, straight[s], v, "step %d after resuming at step %d", s, from)
			}
		})
	}
}

// TestStagedResumeRejectsOtherPlan checks that a run cannot resume a
// checkpoint of another stage plan or final model.
func TestStagedResumeRejectsOtherPlan(t *testing.T) {
	corpus := writeCorpus(t)
	o := stagedOptions(t, corpus)
	tr := newTestTrainer(t, o)
	tr.Log = io.Discard
	runLogged(t, tr)
	l, err := OpenCheckpoint(filepath.Join(CheckpointDir(o.RunDir), "stage-2.ckpt"))
	require.NoError(t, err)
	defer l.R.Close()

	other := o
	other.RunDir = t.TempDir()
	other.Stages = append([]StageSpec(nil), o.Stages...)
	other.Stages[1].Operator = OpIdentity
	require.ErrorContains(t, newTestTrainer(t, other).Resume(l), "stage(s)")

	vanilla := testOptions(t, corpus)
	vanilla.Model.L = 3
	require.ErrorContains(t, newTestTrainer(t, vanilla).Resume(l), "stage(s)")

	wider := o
	wider.RunDir = t.TempDir()
	wider.Model.H = 48
	require.ErrorContains(t, newTestTrainer(t, wider).Resume(l), "d_ff")
}

// TestDefaultStages checks the planner-driven default split and the steps.
func TestDefaultStages(t *testing.T) {
	o := Options{Model: nn.Config{V: 300, C: 64, L: 8, NH: 4, H: 172, T: 16, B: 2, RoPE: 10000, NormEps: 1e-5}, Steps: 90,
		LoRARank: 8}
	s, err := DefaultStages(o, 3)
	require.NoError(t, err)
	total, layers := 0, 0
	for i, st := range s {
		total += st.Run(i == len(s)-1)
		layers += st.Added
	}
	require.Equal(t, 90, total, "the run's steps are shared by the stages")
	require.Equal(t, 8, layers)
	split, err := PaperModelOf(o.Model, 8).Split(3)
	require.NoError(t, err)
	for i := range s {
		require.Equal(t, split.Added[i], s[i].Added)
	}
	_, err = DefaultStages(o, 9)
	require.ErrorContains(t, err, "9 stages for 8 layers")
}

// TestPlanFile checks the TOML plan file: a full example parses, and
// unknown keys, empty files, bad operators and splits that do not add up
// are refused with messages that name the problem.
func TestPlanFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	good := write("good.toml", `
lora_targets = ["attn.wq", "attn.wv"]
[[stage]]
added = 2
steps = 40
[[stage]]
added = 1
steps = 30
lr = 2e-3
lora_rank = 4
lora_alpha = 8
operator = "identity"
position = "intermediate"
grow_at = 0.5
`)
	p, err := ReadPlanFile(good)
	require.NoError(t, err)
	require.Len(t, p.Stages, 2)
	require.Equal(t, "identity", p.Stages[1].Operator)
	require.Equal(t, 0.5, p.Stages[1].GrowAt)

	corpus := writeCorpus(t)
	o := testOptions(t, corpus)
	o.Model.L = 3
	p.Apply(&o)
	o = o.Defaults()
	require.NoError(t, o.Validate())
	require.Equal(t, 30+30, o.Steps, "stage 1 trains 0.75 of 40, the last all 30")

	for _, c := range []struct{ text, want string }{
		{"", "is empty"},
		{"[[stage]]\nadded = 1\nsteps = 3\nopertor = \"mean\"\n", "unknown keys stage.opertor"},
		{"frozen_f32 = true\n", "no [[stage]] tables"},
		{"[[stage]]\nadded = 1\nsteps = \"many\"\n", "steps"},
	} {
		_, err := ReadPlanFile(write("bad.toml", c.text))
		require.ErrorContains(t, err, c.want)
	}
	_, err = ReadPlanFile(filepath.Join(dir, "missing.toml"))
	require.ErrorContains(t, err, "no such file")

	for _, c := range []struct{ text, want string }{
		{"[[stage]]\nadded = 1\nsteps = 4\n[[stage]]\nadded = 1\nsteps = 4\n", "stages add 2 layers in all, but the model has 3"},
		{"[[stage]]\nadded = 2\nsteps = 4\n[[stage]]\nadded = 1\nsteps = 4\noperator = \"splice\"\n", `unknown growth operator "splice"`},
		{"[[stage]]\nadded = 2\nsteps = 4\ngrow_at = 1.5\n[[stage]]\nadded = 1\nsteps = 4\n", "grow_at 1.5"},
	} {
		p, err := ReadPlanFile(write("bad.toml", c.text))
		require.NoError(t, err)
		o := testOptions(t, corpus)
		o.Model.L = 3
		p.Apply(&o)
		require.ErrorContains(t, o.Defaults().Validate(), c.want)
	}
}

// TestStagedRecompute runs the same STEP run with block recomputation: the
// losses are bit-identical, every stage's ledger equals its plan, and the
// activations take less memory in every stage of more than one block.
func TestStagedRecompute(t *testing.T) {
	corpus := writeCorpus(t)
	o := stagedOptions(t, corpus)
	base := newTestTrainer(t, o)
	base.Log = io.Discard
	want := runLogged(t, base)
	base.Release() // the ledger measures everything on the device

	o.RunDir = t.TempDir()
	o.Recompute = true
	tr := newTestTrainer(t, o)
	tr.Log = io.Discard
	got := runLogged(t, tr)
	require.Equal(t, want, got)
	require.Len(t, tr.Memory, 3)
	for i, m := range tr.Memory {
		require.InDelta(t, 0, m.Diff(), 0.01, "stage %d", m.Stage)
		if m.Layers == 1 { // one block: nothing to share
			require.Equal(t, base.Memory[i].Measured["activations"], m.Measured["activations"])
			continue
		}
		require.Less(t, m.Measured["activations"], base.Memory[i].Measured["activations"], "stage %d", m.Stage)
	}
}

// TestExamplePlanFile checks that the documented example plan file
// (examples/plan.toml) is valid for the preset it names.
func TestExamplePlanFile(t *testing.T) {
	p, err := ReadPlanFile("../examples/plan.toml")
	require.NoError(t, err)
	o, err := Preset("tiny")
	require.NoError(t, err)
	p.Apply(&o)
	o = o.Defaults()
	require.NoError(t, o.Validate())
	require.Equal(t, 60+45+60, o.Steps)
}
