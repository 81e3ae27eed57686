package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// firstLoss returns the loss of a run's first logged step.
func firstLoss(t *testing.T, out string) float64 {
	m := regexp.MustCompile(`step 1/\d+ \| stage 1/\d+ \| loss ([0-9.]+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestTrainInit trains a small model, exports it as a Hugging Face folder,
// imports it back and starts new runs from it with --init: a vanilla run
// whose first loss is the trained model's (far below a random start), a
// resume of that run, and a STEP run whose first stage is the imported
// model, grown by a plan file.
func TestTrainInit(t *testing.T) {
	corpus := smallCorpus(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	args := append([]string{"train", "--data", corpus, "--run-dir", src, "--steps", "24", "--lr", "1e-2"}, smallModel...)
	out, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	random := firstLoss(t, out)

	hf, imported := filepath.Join(dir, "hf"), filepath.Join(dir, "imported.ckpt")
	_, errOut, code = runBin(t, nil, "export", "--checkpoint", filepath.Join(src, "checkpoints", "step-00000024.ckpt"),
		"--format", "hf", "--out", hf)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	_, errOut, code = runBin(t, nil, "import", "--from", hf, "--out", imported, "--seq-len", "16")
	require.Equalf(t, 0, code, "stderr: %s", errOut)

	// A vanilla run from the imported weights, with the tiny preset's
	// flags otherwise: the model's shape comes from the checkpoint.
	run := filepath.Join(dir, "init")
	common := []string{"train", "--data", corpus, "--run-dir", run, "--seq-len", "16", "--batch", "2", "--log-every", "2",
		"--eval-every", "4", "--eval-batches", "2", "--sample-every", "0"}
	out, errOut, code = runBin(t, nil, append(common, "--init", imported, "--steps", "4")...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "initialised from "+imported)
	require.Contains(t, out, "L 2")
	started := firstLoss(t, out)
	t.Logf("first loss: %.3f from random weights, %.3f from the imported model", random, started)
	require.Less(t, started, random-0.5, "the run starts from the trained weights")

	// Resume it to 6 steps without repeating --init.
	out, errOut, code = runBin(t, nil, append(common, "--steps", "6", "--resume")...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "step 6/6")

	// STEP from the imported 2-layer model: grow one layer on top.
	plan := filepath.Join(dir, "plan.toml")
	require.NoError(t, os.WriteFile(plan, []byte("[[stage]]\nadded = 2\nsteps = 2\n[[stage]]\nadded = 1\nsteps = 3\n"), 0o644))
	out, errOut, code = runBin(t, nil, "train", "--data", corpus, "--run-dir", filepath.Join(dir, "step"), "--init", imported,
		"--plan", plan, "--layers", "3", "--seq-len", "16", "--batch", "2", "--log-every", "1", "--eval-batches", "2",
		"--sample-every", "0", "--lora-rank", "2")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "growth: stage 2/2 starts at step 1: 2 -> 3 layers")
	require.Less(t, firstLoss(t, out), random-0.5)

	// A first stage that is not the imported model's depth is refused.
	_, errOut, code = runBin(t, nil, "train", "--data", corpus, "--run-dir", filepath.Join(dir, "bad"), "--init", imported,
		"--step", "--stages", "2", "--layers", "6", "--seq-len", "16", "--batch", "2")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "has 2 layers, but the first STEP stage trains")
}
