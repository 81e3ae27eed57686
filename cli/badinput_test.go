package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

// trainedRun trains smallModel for 4 steps into a fresh run folder, saving
// at steps 2 and 4, and returns the corpus and the run folder.
func trainedRun(t *testing.T) (corpus, run string) {
	corpus = smallCorpus(t)
	run = filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "4"}, smallModel...)
	args = append(args, "--save-every", "2", "--sample-every", "0")
	_, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	return corpus, run
}

// hashCheckpoints returns the SHA-256 of every file in a run's checkpoint
// folder, by name.
func hashCheckpoints(t *testing.T, run string) map[string]string {
	t.Helper()
	dir := filepath.Join(run, "checkpoints")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		out[e.Name()] = hex.EncodeToString(sum[:])
	}
	return out
}

// requireCleanFailure checks a failed command: a non-zero exit, the
// expected substring in stderr, and no Go panic.
func requireCleanFailure(t *testing.T, what, errOut string, code int, want string) {
	t.Helper()
	require.NotEqualf(t, 0, code, "%s must fail", what)
	require.NotContainsf(t, errOut, "panic:", "%s panicked", what)
	require.NotContainsf(t, errOut, "goroutine ", "%s crashed", what)
	require.Containsf(t, errOut, want, "%s: the message names the problem", what)
}

type textRow struct {
	Text string `parquet:"text"`
}

type bodyRow struct {
	Body string `parquet:"body"`
}

func writeParquetRows[T any](t *testing.T, path string, rows []T) []byte {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[T](f)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// badDataFiles writes broken corpora of every format into dir and returns
// each path with the substring its error must contain.
func badDataFiles(t *testing.T, dir string) map[string]string {
	rng := rand.New(rand.NewPCG(5, 5))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := []byte(strings.Repeat("// héllo wörld ✓ var x = 1\n", 100))
	lines := strings.Repeat(`{"text": "package main\nfunc main() {}\n"}`+"\n", 50)
	rows := make([]textRow, 50)
	for i := range rows {
		rows[i].Text = strings.Repeat("func f() { return }\n", 5)
	}
	pq := writeParquetRows(t, filepath.Join(dir, "good.parquet"), rows)
	writeParquetRows(t, filepath.Join(dir, "notext.parquet"), []bodyRow{{"a"}, {"b"}})
	files := map[string][]byte{
		"empty.txt":       nil,
		"random.bin":      random,
		"random.txt":      random,
		"empty.jsonl":     nil,
		"random.jsonl":    random,
		"truncated.jsonl": []byte(lines[:len(lines)-20]),
		"notext.jsonl":    []byte(`{"body": "no text here"}` + "\n"),
		"empty.parquet":   nil,
		"random.parquet":  random,
		"trunc.parquet":   pq[:len(pq)/2],
	}
	// Cut the text file one byte into its last multibyte character.
	last := strings.LastIndex(string(text), "✓")
	files["truncated.txt"] = text[:last+1]
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	return map[string]string{
		"missing.txt":     "missing.txt: no such file",
		"empty.txt":       "empty.txt: empty file",
		"random.bin":      "random.bin: not UTF-8 text",
		"random.txt":      "random.txt: not UTF-8 text",
		"truncated.txt":   "truncated.txt: not UTF-8 text: it ends inside a character",
		"empty.jsonl":     "empty.jsonl: empty file",
		"random.jsonl":    "random.jsonl:1: malformed JSON line",
		"truncated.jsonl": "truncated.jsonl:50: malformed JSON line: not a JSON object (truncated",
		"notext.jsonl":    `notext.jsonl:1: no string field "text"`,
		"empty.parquet":   "empty.parquet: empty file",
		"random.parquet":  "random.parquet: not a readable Parquet file",
		"trunc.parquet":   "trunc.parquet: not a readable Parquet file",
		"notext.parquet":  `notext.parquet: Parquet file has no "text" column`,
	}
}

// writePlans writes broken plan files into dir and returns each path with
// the substring its error must contain.
func writePlans(t *testing.T, dir string) map[string]string {
	plans := map[string]string{
		"badop.toml":   "[[stage]]\nadded = 1\nsteps = 2\n[[stage]]\nadded = 1\nsteps = 2\noperator = \"bogus\"\n",
		"badsum.toml":  "[[stage]]\nadded = 1\nsteps = 2\n[[stage]]\nadded = 2\nsteps = 2\n",
		"unknown.toml": "colour = 3\n[[stage]]\nadded = 2\nsteps = 2\n",
		"empty.toml":   "",
		"syntax.toml":  "[[stage\nadded = 1\n",
		"nostage.toml": "frozen_f32 = true\n",
	}
	for name, s := range plans {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644))
	}
	return map[string]string{
		"badop.toml":   `unknown growth operator "bogus"`,
		"badsum.toml":  "stages add 3 layers in all, but the model has 2",
		"unknown.toml": "unknown keys colour",
		"empty.toml":   "empty.toml is empty",
		"syntax.toml":  "plan file " + filepath.Join(dir, "syntax.toml"),
		"nostage.toml": "has no [[stage]] tables",
		"missing.toml": "missing.toml: no such file",
	}
}

// TestBadInputThroughBinary runs `step-gpu train`, `eval`, `generate` and
// `inspect` on broken data, configs, plan files and checkpoints: each must
// exit non-zero with a message naming the problem, never panic, and leave
// the existing run's checkpoints byte for byte as they were.
func TestBadInputThroughBinary(t *testing.T) {
	corpus, run := trainedRun(t)
	before := hashCheckpoints(t, run)
	require.Len(t, before, 3, "two checkpoints and LATEST")
	dir := t.TempDir()
	fresh := func() string { return filepath.Join(t.TempDir(), "run") }
	train := func(runDir string, extra ...string) []string {
		return append(append([]string{"train", "--run-dir", runDir, "--steps", "2"}, smallModel...), extra...)
	}
	type tc struct {
		name string
		args []string
		want string
	}
	var cases []tc
	bad := badDataFiles(t, dir)
	for file, want := range bad {
		path := filepath.Join(dir, file)
		cases = append(cases, tc{"data " + file, train(fresh(), "--data", path), want})
	}
	// Data given to a resumed run, which already has a tokenizer: what the
	// corpus check at open lets through fails at tokenization instead of
	// tokenizer training.
	for _, file := range []string{"random.jsonl", "notext.jsonl", "trunc.parquet"} {
		path := filepath.Join(dir, file)
		cases = append(cases, tc{"resume data " + file, train(run, "--resume", "--data", path), bad[file]})
	}
	for file, want := range writePlans(t, dir) {
		cases = append(cases, tc{"plan " + file, train(fresh(), "--data", corpus, "--plan", filepath.Join(dir, file)), want})
	}
	cases = append(cases,
		tc{"heads", train(fresh(), "--data", corpus, "--d-model", "30", "--heads", "4"), "n_heads 4 does not divide d_model 30"},
		tc{"negative d-model", train(fresh(), "--data", corpus, "--d-model=-16"), "--d-model must not be negative"},
		tc{"negative batch", train(fresh(), "--data", corpus, "--batch=-2"), "--batch must not be negative"},
		tc{"negative seq-len", train(fresh(), "--data", corpus, "--seq-len=-1"), "--seq-len must not be negative"},
		tc{"unknown preset", []string{"train", "--run-dir", fresh(), "--preset", "galactic"}, `unknown preset "galactic"`},
		tc{"resume other d-model", train(run, "--resume", "--data", corpus, "--d-model", "24"),
			"d_model is 16 in the checkpoint but 24 in this run"},
		tc{"resume other layers", train(run, "--resume", "--data", corpus, "--layers", "3"),
			"n_layers is 2 in the checkpoint but 3 in this run"},
		tc{"train over a run", train(run, "--data", corpus), "pass --resume"},
	)

	// Broken copies of the run's last checkpoint.
	good, err := os.ReadFile(filepath.Join(run, "checkpoints", "step-00000004.ckpt"))
	require.NoError(t, err)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-100] ^= 0x10 // inside the last tensor's data
	header := append([]byte(nil), good...)
	header[30] ^= 0x01
	ckpts := map[string]struct {
		data []byte
		want string
	}{
		"empty.ckpt":     {nil, "too short to be a checkpoint"},
		"half.ckpt":      {good[:len(good)/2], "truncated?"},
		"short.ckpt":     {good[:len(good)-7], "truncated?"},
		"headonly.ckpt":  {good[:64], "header length"},
		"random.ckpt":    {good[len(good)-4096:], "not a step-gpu checkpoint"},
		"flipped.ckpt":   {flipped, "checksum"},
		"badheader.ckpt": {header, "header checksum"},
	}
	for name, c := range ckpts {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, c.data, 0o644))
		cases = append(cases, tc{"inspect " + name, []string{"inspect", path}, c.want})
		if name == "flipped.ckpt" {
			// eval and generate read only the weights; the flip is in an
			// AdamW moment, which inspect's full verification catches.
			continue
		}
		cases = append(cases, tc{"eval " + name, []string{"eval", "--checkpoint", path, "--batches", "1"}, c.want})
		if name == "half.ckpt" { // generate opens checkpoints the same way as eval
			cases = append(cases, tc{"generate " + name, []string{"generate", "--checkpoint", path, "--prompt", "var", "--tokens", "2"}, c.want})
		}
	}
	weight := append([]byte(nil), good...)
	weight[len(good)/8] ^= 0x10 // inside an early weight tensor
	weightPath := filepath.Join(dir, "weight.ckpt")
	require.NoError(t, os.WriteFile(weightPath, weight, 0o644))
	cases = append(cases,
		tc{"eval weight flip", []string{"eval", "--checkpoint", weightPath, "--batches", "1"}, "checksum"},
		tc{"generate weight flip", []string{"generate", "--checkpoint", weightPath, "--prompt", "var", "--tokens", "2"}, "checksum"},
		tc{"eval missing", []string{"eval", "--checkpoint", filepath.Join(dir, "nope.ckpt")}, "nope.ckpt"},
	)

	for _, c := range cases {
		_, errOut, code := runBin(t, nil, c.args...)
		requireCleanFailure(t, c.name, errOut, code, c.want)
	}
	require.Equal(t, before, hashCheckpoints(t, run), "no checkpoint of the run changed")
}

// TestResumeFromCorruptLatest checks that a run whose newest checkpoint is
// damaged refuses to resume, names the newest intact checkpoint and how to
// resume from it, and changes no checkpoint.
func TestResumeFromCorruptLatest(t *testing.T) {
	corpus, run := trainedRun(t)
	latest := filepath.Join(run, "checkpoints", "step-00000004.ckpt")
	b, err := os.ReadFile(latest)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(latest, b[:len(b)/3], 0o600))
	before := hashCheckpoints(t, run)
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "6", "--resume"}, smallModel...)
	_, errOut, code := runBin(t, nil, args...)
	requireCleanFailure(t, "resume from a truncated checkpoint", errOut, code, "truncated?")
	require.Contains(t, errOut, "newest intact checkpoint is "+filepath.Join(run, "checkpoints", "step-00000002.ckpt"))
	require.Contains(t, errOut, "echo step-00000002.ckpt > ")
	require.Equal(t, before, hashCheckpoints(t, run))

	// Following the advice resumes from step 2.
	require.NoError(t, os.WriteFile(filepath.Join(run, "checkpoints", "LATEST"), []byte("step-00000002.ckpt\n"), 0o644))
	out, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "at step 2")
	require.Contains(t, out, "step 6/6")
}
