package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/step/repro"
)

// tinyRepro are the flags of a reproduction that takes seconds: a 3-layer
// model, 6 steps per method.
var tinyRepro = []string{"--d-model", "16", "--layers", "3", "--heads", "2", "--d-ff", "40", "--seq-len", "16",
	"--batch", "2", "--vocab", "300", "--steps", "6", "--eval-batches", "2", "--lora-rank", "4"}

// TestRepro runs the real binary's reproduction end to end: vanilla,
// STEP-2, STEP-3 and one ablation, the table, the files, --replot, and the
// refusal to train into folders that hold runs.
func TestRepro(t *testing.T) {
	out := filepath.Join(t.TempDir(), "repro")
	args := append([]string{"repro", "--data", smallCorpus(t), "--out", out, "--stages", "2,3", "--ablations", "frozen-f32"},
		tinyRepro...)
	stdout, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	for _, want := range []string{"== STEP-3 frozen-f32:", "method", "model states max", "STEP-2", "(-",
		"frozen weights in f32 instead of half: validation loss", "wrote " + filepath.Join(out, "results.json")} {
		require.Contains(t, stdout, want)
	}
	var rs repro.Results
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rs))
	require.Len(t, rs.Methods, 4)
	for _, r := range rs.Methods {
		require.Equal(t, int64(6*32), r.Tokens, r.Name)
		require.FileExists(t, filepath.Join(out, r.Name, "metrics.jsonl"))
	}
	for _, f := range []string{"results.md", repro.LossPlot, repro.MemoryPlot, "tokenizer.json"} {
		require.FileExists(t, filepath.Join(out, f))
	}

	require.NoError(t, os.Remove(filepath.Join(out, repro.LossPlot)))
	stdout, errOut, code = runBin(t, nil, "repro", "--out", out, "--replot")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, stdout, "STEP-3 frozen-f32")
	require.FileExists(t, filepath.Join(out, repro.LossPlot))

	_, errOut, code = runBin(t, nil, args...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "already exists")
	require.Contains(t, errOut, "--overwrite")
}

// TestReproBadFlags checks that bad flags fail with a clear message before
// any training.
func TestReproBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ablations", "splice"}, `unknown ablation "splice"`},
		{[]string{"--ablations", "all,copy"}, "give it alone"},
		{[]string{"--stages", "1"}, "at least 2 stages, got 1"},
		{[]string{"--stages", "3,3"}, "3 is listed twice"},
		{[]string{"--stages", "9"}, "9 stages for 8 layers"},
		{[]string{"--ablations", "copy", "--ablation-stages", "1"}, "at least 2 stages, got 1"},
		{[]string{"--lora-rank", "0"}, "--lora-rank must be positive"},
		{[]string{"--tokens=-5"}, "--tokens must not be negative"},
		{[]string{"--layers=-2"}, "--layers must not be negative"},
		{[]string{"--preset", "huge"}, "unknown preset"},
		{[]string{"--total-batch", "100"}, "total batch"},
		{[]string{"--replot"}, "results.json"},
	} {
		args := append([]string{"repro", "--out", filepath.Join(dir, "out")}, c.args...)
		_, errOut, code := runBin(t, nil, args...)
		require.NotEqualf(t, 0, code, "%v must fail", c.args)
		require.Containsf(t, errOut, c.want, "%v", c.args)
		require.NoDirExists(t, filepath.Join(dir, "out", "vanilla"), "%v trained nothing", c.args)
	}
	out, errOut, code := runBin(t, nil, "repro", "--help")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "Usage: step-gpu repro")
	require.Contains(t, out, fmt.Sprint(repro.DefaultTokens), "the help states the default tokens")
}
