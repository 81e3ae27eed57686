package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// hfTestConfig is a small model with a prime vocabulary, three heads of
// size 8 and an FFN width that is no multiple of anything in particular.
var hfTestConfig = nn.Config{V: 61, C: 24, L: 2, NH: 3, H: 40, T: 11, B: 2, RoPE: 10000, NormEps: 1e-5}

// hfRandomWeights returns random parameters of c: matrices N(0, 0.3^2) and
// RMSNorm gains 1 + N(0, 0.3^2), so no tensor is trivial.
func hfRandomWeights(c nn.Config, seed uint64) map[string][]float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := map[string][]float32{}
	for _, s := range c.ParamSpecs() {
		v := make([]float32, s.Numel())
		for i := range v {
			v[i] = float32(0.3 * rng.NormFloat64())
			if s.Std == 0 {
				v[i]++
			}
		}
		w[s.Name] = v
	}
	return w
}

func requireSameWeights(t *testing.T, want, got map[string][]float32) {
	t.Helper()
	require.Len(t, got, len(want))
	for name, w := range want {
		g, ok := got[name]
		require.Truef(t, ok, "tensor %s present", name)
		require.Lenf(t, g, len(w), "tensor %s", name)
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				t.Fatalf("tensor %s[%d]: got %g want %g (not bit for bit)", name, i, g[i], w[i])
			}
		}
	}
}

func TestName(t *testing.T) {
	c := hfTestConfig
	m := NameMap(c)
	require.Len(t, m, len(c.ParamSpecs()))
	seen := map[string]bool{}
	for _, hfName := range m {
		require.False(t, seen[hfName], "names are distinct: %s", hfName)
		seen[hfName] = true
	}
	for in, want := range map[string]string{
		"tok_emb":            "model.embed_tokens.weight",
		"layers.0.attn.wq":   "model.layers.0.self_attn.q_proj.weight",
		"layers.1.attn.wo":   "model.layers.1.self_attn.o_proj.weight",
		"layers.12.mlp.w1":   "model.layers.12.mlp.gate_proj.weight",
		"layers.12.mlp.w3":   "model.layers.12.mlp.up_proj.weight",
		"layers.12.mlp.w2":   "model.layers.12.mlp.down_proj.weight",
		"layers.3.attn_norm": "model.layers.3.input_layernorm.weight",
		"layers.3.mlp_norm":  "model.layers.3.post_attention_layernorm.weight",
		"norm":               "model.norm.weight",
		"lm_head":            "lm_head.weight",
	} {
		got, err := Name(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"layers.x.attn.wq", "layers.1.attn.wq.lora_a", "layers.01.attn.wq", "layers..mlp.w1", "layers.-1.mlp.w1", "adam.m.norm", ""} {
		_, err := Name(bad)
		require.Error(t, err, bad)
	}
}

// TestMergeAdapters checks W += scale·B·A on a hand-built map against
// values worked out by hand.
func TestMergeAdapters(t *testing.T) {
	// W (2, 3), A (1, 3), B (2, 1), scale 0.5: B·A = [[2, 4, 6], [-1, -2, -3]].
	weights := map[string][]float32{
		"layers.0.attn.wq":        {1, 1, 1, 0, 0, 0},
		"layers.0.attn.wq.lora_a": {1, 2, 3},
		"layers.0.attn.wq.lora_b": {2, -1},
		"norm":                    {1, 2, 3},
	}
	shapes := map[string][]int{"layers.0.attn.wq": {2, 3}, "layers.0.attn.wq.lora_a": {1, 3}, "layers.0.attn.wq.lora_b": {2, 1}, "norm": {3}}
	merged, err := MergeAdapters(weights, shapes, 0.5)
	require.NoError(t, err)
	require.Equal(t, []string{"layers.0.attn.wq"}, merged)
	require.Equal(t, map[string][]float32{"layers.0.attn.wq": {2, 3, 4, -0.5, -1, -1.5}, "norm": {1, 2, 3}}, weights)

	// Rank 2 against a float64 loop.
	rng := rand.New(rand.NewPCG(1, 2))
	const out, in, R, scale = 5, 7, 2, 0.25
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	w0, a, b := rnd(out*in), rnd(R*in), rnd(out*R)
	weights = map[string][]float32{"m": append([]float32{}, w0...), "m.lora_a": a, "m.lora_b": b}
	shapes = map[string][]int{"m": {out, in}, "m.lora_a": {R, in}, "m.lora_b": {out, R}}
	_, err = MergeAdapters(weights, shapes, scale)
	require.NoError(t, err)
	for o := range out {
		for i := range in {
			s := 0.0
			for r := range R {
				s += float64(b[o*R+r]) * float64(a[r*in+i])
			}
			require.Equal(t, float32(float64(w0[o*in+i])+scale*s), weights["m"][o*in+i])
		}
	}

	for _, c := range []struct {
		name    string
		weights map[string][]float32
		shapes  map[string][]int
		want    string
	}{
		{"orphan B", map[string][]float32{"m": {1}, "m.lora_b": {1}}, nil, "no matching .lora_a"},
		{"missing B", map[string][]float32{"m": {1}, "m.lora_a": {1}}, map[string][]int{"m": {1, 1}, "m.lora_a": {1, 1}}, "no matching m.lora_b"},
		{"missing base", map[string][]float32{"m.lora_a": {1}, "m.lora_b": {1}}, nil, "no base weight m"},
		{"bad shapes", map[string][]float32{"m": {1, 2}, "m.lora_a": {1}, "m.lora_b": {1, 2}},
			map[string][]int{"m": {1, 2}, "m.lora_a": {1, 1}, "m.lora_b": {1, 2}}, "needs A (R, 2)"},
	} {
		_, err := MergeAdapters(c.weights, c.shapes, 1)
		require.ErrorContains(t, err, c.want, c.name)
	}
}

// TestExportImportRoundTrip exports random weights with a trained BPE and
// imports them back: every tensor bit for bit, the same config and
// tokenizer, and a config.json with the fields transformers reads.
func TestExportImportRoundTrip(t *testing.T) {
	tr := tokenizer.NewTrainer()
	tr.Add([]byte(strings.Repeat("func main() { return x + y }\n", 50)))
	tok, err := tr.Train(270)
	require.NoError(t, err)
	c := hfTestConfig
	c.V = tok.VocabSize()
	w := hfRandomWeights(c, 1)
	dir := filepath.Join(t.TempDir(), "hf")
	require.NoError(t, Export(dir, c, w, tok))

	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	for k, v := range map[string]any{"architectures": []any{"LlamaForCausalLM"}, "model_type": "llama", "hidden_size": 24.0,
		"intermediate_size": 40.0, "num_hidden_layers": 2.0, "num_attention_heads": 3.0, "num_key_value_heads": 3.0,
		"vocab_size": float64(c.V), "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 11.0,
		"tie_word_embeddings": false, "hidden_act": "silu", "torch_dtype": "float32", "eos_token_id": 256.0} {
		require.Equalf(t, v, cfg[k], "config.json %s", k)
	}
	f, err := OpenSafetensors(filepath.Join(dir, WeightsFile))
	require.NoError(t, err)
	require.Equal(t, "pt", f.Metadata["format"], "transformers needs format pt")
	f.Close()

	im, err := Import(dir, c.B, 0)
	require.NoError(t, err)
	require.Equal(t, c, im.Config)
	requireSameWeights(t, w, im.Weights)
	j1, _ := tok.MarshalJSON()
	j2, _ := im.Tok.MarshalJSON()
	require.Equal(t, string(j1), string(j2))

	im, err = Import(dir, 1, 5)
	require.NoError(t, err)
	require.Equal(t, 5, im.Config.T, "--seq-len overrides max_position_embeddings")
	require.Equal(t, 1, im.Config.B)

	// Export refuses an incomplete or unmerged map.
	w["layers.0.attn.wq.lora_a"] = []float32{1}
	require.ErrorContains(t, Export(dir, c, w, tok), "merge LoRA adapters first")
	delete(w, "layers.0.attn.wq.lora_a")
	delete(w, "norm")
	require.ErrorContains(t, Export(dir, c, w, tok), "missing parameter norm")
}

// hfFolder writes a folder with the given config.json changes (nil value:
// delete the key) and tensors (by Hugging Face name) and no tokenizer.
func hfFolder(t *testing.T, c nn.Config, edit map[string]any, tensors []Tensor) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(ConfigFromModel(c))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(b, &cfg))
	for k, v := range edit {
		if v == nil {
			delete(cfg, k)
		} else {
			cfg[k] = v
		}
	}
	require.NoError(t, writeJSON(dir, ConfigFile, cfg))
	if tensors != nil {
		require.NoError(t, WriteSafetensors(filepath.Join(dir, WeightsFile), tensors, nil))
	}
	return dir
}

// hfTensors returns the Hugging Face tensors of weights, optionally
// skipping one name.
func hfTensors(c nn.Config, w map[string][]float32, skip string) []Tensor {
	var out []Tensor
	for _, s := range c.ParamSpecs() {
		n, _ := Name(s.Name)
		if n != skip {
			out = append(out, Tensor{Name: n, Shape: s.Shape, Data: w[s.Name]})
		}
	}
	return out
}

func TestImportRefuses(t *testing.T) {
	c := hfTestConfig
	w := hfRandomWeights(c, 2)
	all := hfTensors(c, w, "")
	extra := append(hfTensors(c, w, ""), Tensor{Name: "model.layers.0.self_attn.q_proj.bias", Shape: []int{24}, Data: make([]float32, 24)})
	badShape := hfTensors(c, w, "model.norm.weight")
	badShape = append(badShape, Tensor{Name: "model.norm.weight", Shape: []int{1, 24}, Data: w["norm"]})
	for _, tc := range []struct {
		name    string
		edit    map[string]any
		tensors []Tensor
		want    string
	}{
		{"grouped-query attention", map[string]any{"num_key_value_heads": 1}, all, "num_key_value_heads 1 differs from num_attention_heads 3"},
		{"rope scaling", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2}}, all, "rope_scaling"},
		{"activation", map[string]any{"hidden_act": "gelu"}, all, `hidden_act "gelu"`},
		{"model type", map[string]any{"model_type": "mistral"}, all, `model_type "mistral"`},
		{"biases", map[string]any{"attention_bias": true}, all, "biases are not supported"},
		{"head dim", map[string]any{"head_dim": 16}, all, "head_dim 16"},
		{"bad heads", map[string]any{"num_attention_heads": 5, "num_key_value_heads": 5}, all, "does not divide"},
		{"no context length", map[string]any{"max_position_embeddings": nil}, all, "no max_position_embeddings"},
		{"missing tensor", nil, hfTensors(c, w, "model.layers.1.mlp.up_proj.weight"), "missing tensor model.layers.1.mlp.up_proj.weight"},
		{"untied without head", nil, hfTensors(c, w, "lm_head.weight"), "missing tensor lm_head.weight"},
		{"unexpected tensor", nil, extra, "unexpected tensors [model.layers.0.self_attn.q_proj.bias]"},
		{"wrong shape", nil, badShape, "model.norm.weight has shape [1 24], config.json implies [24]"},
		{"no tokenizer", nil, all, "no tokenizer.json, and vocab_size 61"},
		{"no weights", nil, nil, "only safetensors weights are supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Import(hfFolder(t, c, tc.edit, tc.tensors), 1, 0)
			require.ErrorContains(t, err, tc.want)
		})
	}
	dir := hfFolder(t, c, nil, all)
	require.NoError(t, os.WriteFile(filepath.Join(dir, TokenizerFile), []byte(`{"model": {"type": "WordPiece"}}`), 0o644))
	_, err := Import(dir, 1, 0)
	require.ErrorContains(t, err, "only byte-level BPE")
}

// TestImportVariants covers what Import accepts beyond its own export: tied
// embeddings without lm_head, F16 and BF16 tensors, sharded weights, RoPE's
// saved inverse frequencies, a missing rope_theta, the plain-bytes
// tokenizer.
func TestImportVariants(t *testing.T) {
	c := hfTestConfig
	c.V = tokenizer.MinVocab
	w := hfRandomWeights(c, 3)

	t.Run("tied", func(t *testing.T) {
		dir := hfFolder(t, c, map[string]any{"tie_word_embeddings": true}, hfTensors(c, w, "lm_head.weight"))
		im, err := Import(dir, 1, 0)
		require.NoError(t, err)
		require.Equal(t, w["tok_emb"], im.Weights["lm_head"])
		require.Equal(t, tokenizer.MinVocab, im.Tok.VocabSize(), "plain-bytes tokenizer")
		require.NotEmpty(t, im.Notes)
	})
	t.Run("sharded with inv_freq and default theta", func(t *testing.T) {
		dir := hfFolder(t, c, map[string]any{"rope_theta": nil}, nil)
		ts := append(hfTensors(c, w, ""), Tensor{Name: "model.layers.0.self_attn.rotary_emb.inv_freq", Shape: []int{4}, Data: make([]float32, 4)})
		index := map[string]string{}
		for i, part := range [][]Tensor{ts[:7], ts[7:]} {
			name := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
			require.NoError(t, WriteSafetensors(filepath.Join(dir, name), part, nil))
			for _, p := range part {
				index[p.Name] = name
			}
		}
		require.NoError(t, writeJSON(dir, WeightsIndex, map[string]any{"metadata": map[string]any{}, "weight_map": index}))
		im, err := Import(dir, 1, 0)
		require.NoError(t, err)
		require.Equal(t, float64(DefaultRoPETheta), im.Config.RoPE)
		requireSameWeights(t, w, im.Weights)

		require.NoError(t, writeJSON(dir, WeightsIndex, map[string]any{"weight_map": map[string]string{"x": "../evil.safetensors"}}))
		_, err = Import(dir, 1, 0)
		require.ErrorContains(t, err, "not a file name in the folder")
	})
	t.Run("half precision", func(t *testing.T) {
		// Rewrite each tensor as F16 (even layers) or BF16 (odd), values
		// rounded so the conversion back to float32 is exact.
		dir := hfFolder(t, c, nil, nil)
		header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
		var data []byte
		want := map[string][]float32{}
		for i, ts := range hfTensors(c, w, "") {
			dtype := []string{"F16", "BF16"}[i%2]
			begin := len(data)
			vals := make([]float32, len(ts.Data))
			for j, v := range ts.Data {
				var h uint16
				if dtype == "BF16" {
					h = uint16(math.Float32bits(v) >> 16) // truncation: exact by construction
				} else {
					h = float16Bits(t, v)
				}
				data = append(data, byte(h), byte(h>>8))
				vals[j] = decodeFloats([]byte{byte(h), byte(h >> 8)}, dtype)[0]
			}
			header[ts.Name] = entry{"dtype": dtype, "shape": ts.Shape, "data_offsets": []int{begin, len(data)}}
			for _, s := range c.ParamSpecs() {
				if n, _ := Name(s.Name); n == ts.Name {
					want[s.Name] = vals
				}
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, WeightsFile), rawSafetensors(t, header, data), 0o644))
		im, err := Import(dir, 1, 0)
		require.NoError(t, err)
		requireSameWeights(t, want, im.Weights)
		require.Contains(t, strings.Join(im.Notes, "; "), "BF16 tensors converted")
	})
}

// float16Bits returns the binary16 bits of a float32 in the normal half
// range, truncating the mantissa (enough for a test that only needs some
// exactly representable value near v).
func float16Bits(t *testing.T, v float32) uint16 {
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127
	if v == 0 || exp < -14 {
		return sign
	}
	require.Less(t, exp, 16, "value %g beyond the half range", v)
	return sign | uint16(exp+15)<<10 | uint16(b>>13&0x3ff)
}
