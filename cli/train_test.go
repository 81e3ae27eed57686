package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// smallCorpus writes a corpus big enough for a validation split.
func smallCorpus(t *testing.T) string {
	dir := t.TempDir()
	for i := range 30 {
		var b strings.Builder
		for j := range 40 {
			fmt.Fprintf(&b, "// line %d of file %d\nvar v%d_%d = %d\n", j, i, i, j, i*j)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.go", i)), []byte(b.String()), 0o644))
	}
	return dir
}

var smallModel = []string{"--d-model", "16", "--layers", "2", "--heads", "2", "--d-ff", "40", "--seq-len", "16",
	"--batch", "2", "--vocab", "300", "--log-every", "2", "--eval-every", "4", "--eval-batches", "2", "--save-every", "4",
	"--sample-every", "4"}

// TestTrainEvalGenerate runs the real binary end to end: train, resume to
// more steps, evaluate and sample the saved checkpoint.
func TestTrainEvalGenerate(t *testing.T) {
	corpus := smallCorpus(t)
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "4"}, smallModel...)
	out, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "step 4/4 | stage 1/1 | loss")
	require.Contains(t, out, "val ppl")
	require.Contains(t, out, "model saved:")
	require.FileExists(t, filepath.Join(run, "metrics.jsonl"))
	require.FileExists(t, filepath.Join(run, "tokenizer.json"))

	// A second train into the same folder without --resume must refuse and
	// leave the checkpoint alone.
	ckpt := filepath.Join(run, "checkpoints", "step-00000004.ckpt")
	before, err := os.ReadFile(ckpt)
	require.NoError(t, err)
	_, errOut, code = runBin(t, nil, args...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "--resume")
	after, err := os.ReadFile(ckpt)
	require.NoError(t, err)
	require.Equal(t, before, after)

	// Resume to 6 steps.
	args6 := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "6", "--resume"}, smallModel...)
	out, errOut, code = runBin(t, nil, args6...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "resumed")
	require.Contains(t, out, "step 6/6")

	// Resuming with another model shape is refused.
	bad := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "8", "--resume"}, smallModel...)
	bad = append(bad, "--d-model", "24", "--heads", "3")
	_, errOut, code = runBin(t, nil, bad...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "d_model")

	last := filepath.Join(run, "checkpoints", "step-00000006.ckpt")
	out, errOut, code = runBin(t, nil, "eval", "--checkpoint", last, "--batches", "2")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "val ppl")
	out, errOut, code = runBin(t, nil, "generate", "--checkpoint", last, "--prompt", "var ", "--tokens", "5")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.True(t, strings.HasPrefix(out, "var "), "output starts with the prompt: %q", out)

	out, errOut, code = runBin(t, nil, "inspect", "--json", last)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	var rep struct {
		Step   int `json:"step"`
		Groups map[string]struct {
			Tensors int `json:"tensors"`
		} `json:"groups"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Equal(t, 6, rep.Step)
	require.Equal(t, 2*rep.Groups["trainable"].Tensors, rep.Groups["optimizer"].Tensors, "two AdamW moments per parameter")
	b, err := os.ReadFile(last)
	require.NoError(t, err)
	b[len(b)-3] ^= 0x40
	flipped := filepath.Join(t.TempDir(), "flipped.ckpt")
	require.NoError(t, os.WriteFile(flipped, b, 0o644))
	_, errOut, code = runBin(t, nil, "inspect", flipped)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "checksum")
}

// TestTrainBadInput checks that bad flags and data fail with a clear
// message and a non-zero exit before any training.
func TestTrainBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	binary := filepath.Join(dir, "data.bin")
	require.NoError(t, os.WriteFile(binary, []byte{0xff, 0xfe, 0x00, 0x81}, 0o644))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"--data", empty}, "empty"},
		{[]string{"--data", binary}, "data.bin"},
		{[]string{"--preset", "huge"}, "unknown preset"},
		{[]string{"--d-model", "30", "--heads", "4"}, "does not divide"},
		{[]string{"--layers=-2"}, "negative"},
		{[]string{"--total-batch", "100"}, "total batch"},
	}
	for _, c := range cases {
		args := append([]string{"train", "--run-dir", filepath.Join(dir, "run")}, c.args...)
		_, errOut, code := runBin(t, nil, args...)
		require.NotEqualf(t, 0, code, "%v must fail", c.args)
		require.Containsf(t, errOut, c.want, "%v", c.args)
	}
	_, errOut, code := runBin(t, nil, "eval", "--checkpoint", empty)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "too short")
}
