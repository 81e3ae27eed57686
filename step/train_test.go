package step

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/nn"
)

// writeCorpus writes a small deterministic text corpus of many documents.
func writeCorpus(t *testing.T) string {
	dir := t.TempDir()
	for i := range 40 {
		var b strings.Builder
		for j := range 30 {
			fmt.Fprintf(&b, "func f%d_%d(x int) int { return x*%d + %d }\n", i, j, (i*7+j)%13, j%5)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("doc%02d.go", i)), []byte(b.String()), 0o644))
	}
	return dir
}

func testOptions(t *testing.T, corpus string) Options {
	o := Options{
		Model:  nn.Config{V: 300, C: 16, L: 2, NH: 2, H: 40, T: 16, B: 2, RoPE: 10000, NormEps: 1e-5},
		Data:   corpus,
		RunDir: t.TempDir(),
		Steps:  6, LR: 3e-3, LogEvery: 1, EvalEvery: 3, EvalBatches: 2, SaveEvery: 3, SampleEvery: 0, Keep: 2,
		TotalBatch: 64, // two micro-batches per step: accumulation is exercised
	}
	return o.Defaults()
}

func newTestTrainer(t *testing.T, o Options) *Trainer {
	d := gputest.Device(t)
	data, err := PrepareData(o.Data, o.RunDir, o.Model.V, o.ByteTokens, o.Model.B, o.Model.T, o.Shuffle, o.Seed, io.Discard, nil)
	require.NoError(t, err)
	t.Cleanup(data.Close)
	tr, err := NewTrainer(d, o, data, io.Discard)
	require.NoError(t, err)
	t.Cleanup(tr.Release)
	return tr
}

func losses(t *testing.T, tr *Trainer, n int) []float64 {
	var out []float64
	for range n {
		res, err := tr.TrainStep(true)
		require.NoError(t, err)
		out = append(out, res.Loss)
	}
	return out
}

// TestResumeIsExact trains 6 steps straight, and 3 steps + checkpoint +
// a fresh trainer resumed from it + 3 steps: the losses must be identical.
func TestResumeIsExact(t *testing.T) {
	corpus := writeCorpus(t)
	o := testOptions(t, corpus)
	straight := losses(t, newTestTrainer(t, o), 6)

	o2 := o
	o2.RunDir = t.TempDir()
	first := newTestTrainer(t, o2)
	part := losses(t, first, 3)
	path, err := first.Save()
	require.NoError(t, err)

	second := newTestTrainer(t, o2)
	l, err := OpenCheckpoint(path)
	require.NoError(t, err)
	defer l.R.Close()
	require.NoError(t, second.Resume(l))
	require.Equal(t, 3, second.Step)
	part = append(part, losses(t, second, 3)...)
	require.Equal(t, straight, part, "resumed losses equal an uninterrupted run's, bit for bit")
	require.Less(t, straight[5], straight[0], "loss decreases")
}

func TestRunWritesCheckpointsAndMetrics(t *testing.T) {
	o := testOptions(t, writeCorpus(t))
	tr := newTestTrainer(t, o)
	m, err := OpenMetrics(filepath.Join(o.RunDir, "metrics.jsonl"))
	require.NoError(t, err)
	tr.Metrics = m
	val, err := tr.Run()
	require.NoError(t, err)
	require.NoError(t, m.Close())
	require.False(t, math.IsNaN(val))
	latest, err := LatestCheckpoint(o.RunDir)
	require.NoError(t, err)
	require.FileExists(t, latest)
	entries, err := os.ReadDir(CheckpointDir(o.RunDir))
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ckpt") {
			n++
		}
	}
	require.Equal(t, o.Keep, n, "--keep prunes old checkpoints")
	b, err := os.ReadFile(filepath.Join(o.RunDir, "metrics.jsonl"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, o.Steps)
	for _, k := range []string{`"step"`, `"tokens"`, `"loss"`, `"lr"`, `"tok_per_s"`, `"ledger_bytes"`, `"ledger_peak_bytes"`} {
		require.Contains(t, lines[len(lines)-1], k)
	}
	require.Contains(t, lines[2], `"val_loss"`)
}

// TestNonFiniteStops poisons a weight with NaN: the step must fail with
// ErrNonFinite and no checkpoint may be written.
func TestNonFiniteStops(t *testing.T) {
	o := testOptions(t, writeCorpus(t))
	tr := newTestTrainer(t, o)
	w := make([]float32, o.Model.V*o.Model.C)
	for i := range w {
		w[i] = float32(math.NaN())
	}
	require.NoError(t, tr.Model.WriteParam("lm_head", w))
	_, err := tr.Run()
	require.ErrorIs(t, err, ErrNonFinite)
	_, err = LatestCheckpoint(o.RunDir)
	require.Error(t, err, "no checkpoint after a non-finite loss")
}

func TestResumeRejectsOtherConfig(t *testing.T) {
	o := testOptions(t, writeCorpus(t))
	tr := newTestTrainer(t, o)
	path, err := tr.Save()
	require.NoError(t, err)
	o2 := o
	o2.RunDir = t.TempDir()
	o2.Model.C = 24
	o2.Model.NH = 3
	other := newTestTrainer(t, o2)
	l, err := OpenCheckpoint(path)
	require.NoError(t, err)
	defer l.R.Close()
	require.ErrorContains(t, other.Resume(l), "d_model")
}
