package cli

import (
	endian "encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/hf"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
	"github.com/step-gpu/step-gpu/shaders"
	"github.com/step-gpu/step-gpu/step"
)

// readCheckpointWeights returns every weight tensor of a checkpoint.
func readCheckpointWeights(t *testing.T, path string) (map[string][]float32, *step.Loaded) {
	t.Helper()
	l, err := step.OpenCheckpoint(path)
	require.NoError(t, err)
	t.Cleanup(func() { l.R.Close() })
	w, _, err := step.ReadWeights(l)
	require.NoError(t, err)
	return w, l
}

// TestExportImportHF trains a small model for two steps with the real
// binary, exports it to a Hugging Face folder, imports that back, and checks
// that every parameter survives bit for bit, that the config and tokenizer
// match, and that generate (greedy) and eval work on the imported
// checkpoint and generate gives the same text as on the original.
func TestExportImportHF(t *testing.T) {
	corpus := smallCorpus(t)
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", corpus, "--run-dir", run, "--steps", "2"}, smallModel...)
	_, errOut, code := runBin(t, nil, args...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	ckpt, err := step.LatestCheckpoint(run)
	require.NoError(t, err)

	hfDir := filepath.Join(t.TempDir(), "hf")
	out, errOut, code := runBin(t, nil, "export", "--checkpoint", ckpt, "--format", "hf", "--out", hfDir)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "exported")
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
		require.FileExists(t, filepath.Join(hfDir, f))
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(hfDir, "config.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	require.Equal(t, "llama", cfg["model_type"])
	require.Equal(t, 16.0, cfg["hidden_size"])

	imported := filepath.Join(t.TempDir(), "imp", "checkpoints", "step-00000000.ckpt")
	out, errOut, code = runBin(t, nil, "import", "--from", hfDir, "--out", imported, "--seq-len", "16", "--batch", "2")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "imported")

	want, orig := readCheckpointWeights(t, ckpt)
	got, back := readCheckpointWeights(t, imported)
	require.NoError(t, step.SameModel(orig.Config, back.Config))
	require.Equal(t, orig.Tok.Merges(), back.Tok.Merges())
	require.Len(t, got, len(want))
	for name, w := range want {
		g := got[name]
		require.Lenf(t, g, len(w), "tensor %s", name)
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				t.Fatalf("tensor %s[%d]: %g after the round trip, %g before", name, i, g[i], w[i])
			}
		}
	}

	gen := func(path string) string {
		out, errOut, code := runBin(t, nil, "generate", "--checkpoint", path, "--prompt", "var v", "--tokens", "6", "--temperature", "0")
		require.Equalf(t, 0, code, "stderr: %s", errOut)
		return out
	}
	require.Equal(t, gen(ckpt), gen(imported), "greedy generation is the same from the imported checkpoint")
	out, errOut, code = runBin(t, nil, "eval", "--checkpoint", imported, "--data", corpus, "--batches", "1")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "val ppl")

	// An existing --out is kept unless --force.
	_, errOut, code = runBin(t, nil, "import", "--from", hfDir, "--out", imported)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "--force")

	// Grouped-query attention is refused with a clear message.
	cfg["num_key_value_heads"] = 1
	b, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(hfDir, "config.json"), b, 0o644))
	_, errOut, code = runBin(t, nil, "import", "--from", hfDir, "--out", filepath.Join(t.TempDir(), "x.ckpt"))
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "grouped-query attention is not supported")
}

// TestExportMergesAdapters writes a STEP stage checkpoint by hand (block 0
// frozen with half-precision weights and rank-2 adapters, block 1 trained)
// and checks that export widens the halves and merges W += (alpha/R)·B·A
// into each adapted map, bit for bit with the same float64 sum.
func TestExportMergesAdapters(t *testing.T) {
	c := nn.Config{V: tokenizer.MinVocab, C: 8, L: 2, NH: 2, H: 12, T: 4, B: 1, RoPE: 10000, NormEps: 1e-5}
	lo := nn.Layout{Frozen: []bool{true, false}, R: 2, Alpha: 3, Format: shaders.Half}
	cfgBytes, err := msgpack.Marshal(&c)
	require.NoError(t, err)
	loBytes, err := msgpack.Marshal(&lo)
	require.NoError(t, err)
	tok, err := tokenizer.Bytes().MarshalJSON()
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 6))
	vals := map[string][]float32{}
	var tensors []checkpoints.Tensor
	trained, frozen := c.StagedSpecs(lo)
	for i, set := range [][]nn.ParamSpec{trained, frozen} {
		for _, s := range set {
			v := make([]float32, s.Numel())
			for j := range v {
				v[j] = float32(rng.NormFloat64())
			}
			ct := checkpoints.Tensor{Name: s.Name, DType: checkpoints.F32, Shape: s.Shape, Group: checkpoints.Trainable}
			switch {
			case s.LoRA:
				ct.Group = checkpoints.LoRA
			case i == 1 && len(s.Shape) == 2:
				words := shaders.PackHalf(v)
				v = shaders.UnpackHalf(words, len(v))
				for _, w := range words {
					ct.Data = endian.LittleEndian.AppendUint32(ct.Data, w)
				}
				ct.DType, ct.Group = checkpoints.F16, checkpoints.Frozen
			case i == 1:
				ct.Group = checkpoints.Frozen
			}
			if ct.Data == nil {
				for _, x := range v {
					ct.Data = endian.LittleEndian.AppendUint32(ct.Data, math.Float32bits(x))
				}
			}
			vals[s.Name] = v
			tensors = append(tensors, ct)
		}
	}
	ckpt := filepath.Join(t.TempDir(), "stage-1.ckpt")
	require.NoError(t, checkpoints.Write(ckpt, checkpoints.Header{Config: cfgBytes, Layout: loBytes, Stage: 1, Stages: 2,
		Tokenizer: tok}, tensors))

	hfDir := filepath.Join(t.TempDir(), "hf")
	out, errOut, code := runBin(t, nil, "export", "--checkpoint", ckpt, "--out", hfDir)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "merged 7 LoRA adapters")
	f, err := hf.OpenSafetensors(filepath.Join(hfDir, hf.WeightsFile))
	require.NoError(t, err)
	defer f.Close()
	require.Len(t, f.Names(), len(c.ParamSpecs()), "no adapter tensors in the export")
	scale := lo.Alpha / float64(lo.R)
	for _, s := range c.ParamSpecs() {
		want := append([]float32(nil), vals[s.Name]...)
		if a, ok := vals[s.Name+".lora_a"]; ok {
			b := vals[s.Name+".lora_b"]
			out, in := s.Shape[0], s.Shape[1]
			for o := range out {
				for i := range in {
					sum := 0.0
					for r := range lo.R {
						sum += float64(b[o*lo.R+r]) * float64(a[r*in+i])
					}
					want[o*in+i] = float32(float64(want[o*in+i]) + scale*sum)
				}
			}
		}
		name, err := hf.Name(s.Name)
		require.NoError(t, err)
		got, _, err := f.Read(name)
		require.NoError(t, err)
		require.Equal(t, want, got, "%s (%s)", s.Name, name)
	}
}
