package cli

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

func init() { benchGenerators = append(benchGenerators, checkpointCases) }

// checkpointCases measure checkpoint speed at the preset's model: the write
// is the trainer's own Save (read back every weight and AdamW moment,
// encode, write, sync and rename), the load is what `train --resume` does
// (OpenCheckpoint, then LoadWeights with the moments: read, verify every
// checksum, upload). GB/s divides the checkpoint file's bytes by the time,
// the note's MB/s the tensor bytes. They run only when --op selects them,
// since their setup trains a tokenizer of the preset's vocabulary on a
// generated corpus (a few seconds).
func checkpointCases(cfg nn.Config, c *BenchCmd) []benchCase {
	if c.Op == "" || !strings.Contains("checkpoint_write checkpoint_load", c.Op) {
		return nil
	}
	shape := fmt.Sprintf("V%d C%d L%d NH%d H%d", cfg.V, cfg.C, cfg.L, cfg.NH, cfg.H)
	// The note's MB/s counts the tensor bytes: f32 weights and two AdamW
	// moments per parameter (the header adds a few kB).
	mb := 12 * float64(cfg.Params()) / 1e6
	write := benchCase{op: "checkpoint_write", shape: shape, items: mb, unit: "MB",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			t, size, release, err := checkpointTrainer(d, cfg)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rec := func(*gpu.Recorder) error { _, err := t.Save(); return err }
			return rec, 0, float64(size), release, nil
		}}
	load := benchCase{op: "checkpoint_load", shape: shape, items: mb, unit: "MB",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			t, size, release, err := checkpointTrainer(d, cfg)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			path, err := step.LatestCheckpoint(t.Opt.RunDir)
			if err != nil {
				release()
				return nil, 0, 0, nil, err
			}
			rec := func(*gpu.Recorder) error {
				l, err := step.OpenCheckpoint(path)
				if err != nil {
					return err
				}
				defer l.R.Close()
				if err := step.LoadWeights(l, t.Model, true); err != nil {
					return err
				}
				return d.Sync()
			}
			return rec, 0, float64(size), release, nil
		}}
	return []benchCase{write, load}
}

// checkpointTrainer prepares a trainer of cfg in a temporary run folder
// (a generated corpus, a BPE tokenizer of cfg.V tokens), saves one
// checkpoint and returns the trainer, the checkpoint's size in bytes and a
// function that frees the model and removes the folder.
func checkpointTrainer(d *gpu.Device, cfg nn.Config) (*step.Trainer, int64, func(), error) {
	dir, err := os.MkdirTemp("", "step-gpu-bench-ckpt")
	if err != nil {
		return nil, 0, nil, err
	}
	fail := func(err error) (*step.Trainer, int64, func(), error) {
		os.RemoveAll(dir)
		return nil, 0, nil, fmt.Errorf("checkpoint bench: %w", err)
	}
	corpus := filepath.Join(dir, "corpus")
	if err := writeBenchCorpus(corpus, 40, 64<<10); err != nil {
		return fail(err)
	}
	o := step.Options{Model: cfg, RunDir: filepath.Join(dir, "run"), Steps: 1, Seed: 1}.Defaults()
	data, err := step.PrepareData(corpus, o.RunDir, cfg.V, false, cfg.B, cfg.T, false, 1, io.Discard, nil)
	if err != nil {
		return fail(err)
	}
	t, err := step.NewTrainer(d, o, data, io.Discard)
	if err != nil {
		data.Close()
		return fail(err)
	}
	release := func() {
		t.Release()
		data.Close()
		os.RemoveAll(dir)
	}
	path, err := t.Save()
	if err != nil {
		release()
		return nil, 0, nil, fmt.Errorf("checkpoint bench: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		release()
		return nil, 0, nil, err
	}
	return t, st.Size(), release, nil
}

// writeBenchCorpus writes files text files of about size bytes each, made
// of pseudo-words from a fixed seed: enough distinct pairs for a BPE of a
// few thousand tokens.
func writeBenchCorpus(dir string, files, size int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(11, 11))
	const letters = "abcdefghijklmnopqrstuvwxyz"
	for i := range files {
		var b strings.Builder
		for b.Len() < size {
			for range 1 + rng.IntN(9) {
				b.WriteByte(letters[rng.IntN(len(letters))])
			}
			if rng.IntN(12) == 0 {
				b.WriteString(".\n")
			} else {
				b.WriteByte(' ')
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("doc%02d.txt", i)), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
