package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModelTooLargeForDevice checks that a model the device cannot hold is
// refused before anything is allocated or tokenized, naming the tensor or
// the total, the device limit and the way out. The sizes would need
// gigabytes if allocated; the refusal takes well under a second.
func TestModelTooLargeForDevice(t *testing.T) {
	corpus := smallCorpus(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"one weight over the binding limit", []string{"--d-model", "8192", "--heads", "64", "--d-ff", "64", "--layers", "1"},
			// lavapipe: 128 MiB bindings; wq alone is 8192*8192*4 = 256 MiB.
			[]string{"tensor layers.0.attn.wq [8192 8192] is 256.0 MiB", "maxStorageBufferBindingSize of 128.0 MiB",
				"the run's buffers total", "--d-model", "step-gpu plan"}},
		{"one activation over the binding limit", []string{"--batch", "512", "--seq-len", "1024", "--d-ff", "128"},
			[]string{"tensor act.0.g [524288 128] is 256.0 MiB", "maxStorageBufferBindingSize", "smaller --batch",
				"step-gpu plan"}},
		{"absurd total", []string{"--d-model", "1024", "--heads", "8", "--d-ff", "2048", "--layers", "3000"},
			[]string{"the run's buffers total", "GiB in the planned ledger", "step-gpu plan", "--step", "--stages",
				"smaller --batch", "--recompute"}},
	}
	for _, c := range cases {
		run := filepath.Join(t.TempDir(), "run")
		args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "2", "--byte-tokens",
			"--d-model", "16", "--layers", "2", "--heads", "2", "--d-ff", "40", "--seq-len", "16", "--batch", "2"}, c.args...)
		_, errOut, code := runBin(t, nil, args...)
		for _, w := range c.want {
			requireCleanFailure(t, c.name, errOut, code, w)
		}
		require.Contains(t, errOut, "model does not fit the device")
		require.NotContains(t, errOut, "tokenizer:", "refused before any data preparation")
		require.NoDirExists(t, filepath.Join(run, "checkpoints"))
	}
}

// TestDeviceLostDuringTraining loses the device for real in the middle of a
// run (the STEP_GPU_FAULT_LOSE_DEVICE_AT hook marks it lost as the driver's
// callback would): the run must stop with a message giving the step, the
// reason, the last intact checkpoint and how to resume, exit non-zero, keep
// the earlier checkpoints and LATEST as they were, and leave every logged
// step in metrics.jsonl. Resuming then finishes the run.
func TestDeviceLostDuringTraining(t *testing.T) {
	corpus := smallCorpus(t)
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "7"}, smallModel...)
	args = append(args, "--save-every", "2", "--log-every", "1", "--sample-every", "0")

	// A first process saves steps 2 and 4, then loses the device after
	// step 5 (the hook fires before step 5's evaluation and save).
	out, errOut, code := runBin(t, []string{faultEnv + "=5"}, args...)
	ckpts := filepath.Join(run, "checkpoints")
	last := filepath.Join(ckpts, "step-00000004.ckpt")
	requireCleanFailure(t, "device loss", errOut, code, "training stopped at step 5: device lost")
	require.Contains(t, errOut, "fault injected after step 5")
	require.Contains(t, errOut, "the last intact checkpoint is "+last+" (step 4)")
	require.Contains(t, errOut, "--resume")
	require.Contains(t, out, "step 5/7")
	require.NotContains(t, out, "step 6/7")
	latest, err := os.ReadFile(filepath.Join(ckpts, "LATEST"))
	require.NoError(t, err)
	require.Equal(t, "step-00000004.ckpt\n", string(latest), "LATEST still names the last good checkpoint")
	require.NoFileExists(t, filepath.Join(ckpts, "step-00000006.ckpt"))
	before := hashCheckpoints(t, run)
	_, errOut, code = runBin(t, nil, "inspect", last)
	require.Equalf(t, 0, code, "the kept checkpoint verifies: %s", errOut)

	// metrics.jsonl holds every step logged before the loss, each a whole
	// JSON line.
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	require.NoError(t, err)
	var steps []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct {
			Step int `json:"step"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		steps = append(steps, m.Step)
	}
	require.NoError(t, f.Close())
	require.Equal(t, []int{1, 2, 3, 4, 5}, steps)

	// A bad hook value is refused before anything runs.
	_, errOut, code = runBin(t, []string{faultEnv + "=soon"}, append(args, "--resume")...)
	requireCleanFailure(t, "bad hook", errOut, code, faultEnv)
	require.Equal(t, before, hashCheckpoints(t, run))

	// Resuming as the message says finishes the run from step 4.
	out, errOut, code = runBin(t, nil, append(args, "--resume")...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "resumed "+last+" at step 4")
	require.Contains(t, out, "step 7/7")
}
