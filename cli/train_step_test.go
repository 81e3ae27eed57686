package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTrainStep runs `train --step` through the real binary: two stages
// with a growth, the per-stage memory report (ledger equal to the plan),
// the stage checkpoint, eval and generate of the staged checkpoint, and an
// interrupted run resumed mid-stage that ends with exactly the
// uninterrupted run's validation loss.
func TestTrainStep(t *testing.T) {
	corpus := smallCorpus(t)
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "8", "--step", "--stages", "2",
		"--lora-rank", "4"}, smallModel...)
	args = append(args, "--save-every", "2") // after smallModel's, which it overrides
	out, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "| stage 1/2 |")
	require.Contains(t, out, "growth: stage 2/2 starts at step 4: 1 -> 2 layers (mean at upper), 1 frozen (half), LoRA rank 4")
	require.Contains(t, out, "| stage 2/2 |")
	require.Regexp(t, `memory stage 1/2 .*model buffers [0-9.]+/[0-9.]+ \(\+0\.00%\)`, out)
	require.Regexp(t, `memory stage 2/2 .*model buffers [0-9.]+/[0-9.]+ \(\+0\.00%\)`, out)
	final := regexp.MustCompile(`val loss ([0-9.]+)`).FindStringSubmatch(out)
	require.NotNil(t, final, out)
	stage2 := filepath.Join(run, "checkpoints", "stage-2.ckpt")
	require.FileExists(t, stage2)

	latest := filepath.Join(run, "checkpoints", "step-00000008.ckpt")
	for _, cmd := range [][]string{
		{"eval", "--checkpoint", latest, "--data", corpus},
		{"generate", "--checkpoint", latest, "--prompt", "var", "--tokens", "5"},
		{"inspect", latest},
	} {
		o, e, code := runBin(t, nil, cmd...)
		require.Equalf(t, 0, code, "%v: %s", cmd, e)
		require.NotEmpty(t, o)
		if cmd[0] == "inspect" {
			require.Contains(t, o, "frozen")
			require.Contains(t, o, "lora")
		}
	}

	// Interrupt: drop everything after step 6 (mid stage 2) and resume.
	require.NoError(t, os.Remove(latest))
	require.NoError(t, os.WriteFile(filepath.Join(run, "checkpoints", "LATEST"), []byte("step-00000006.ckpt\n"), 0o644))
	out2, errOut, code := runBin(t, nil, append(args, "--resume")...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out2, "resumed")
	require.Contains(t, out2, "at step 6")
	again := regexp.MustCompile(`val loss ([0-9.]+)`).FindStringSubmatch(out2)
	require.NotNil(t, again, out2)
	require.Equal(t, final[1], again[1], "a resumed STEP run ends where the uninterrupted one did")
}
