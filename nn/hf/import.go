package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// Imported is a Hugging Face LLaMA folder converted to step-gpu's model.
type Imported struct {
	// Config is the model config; B and T are the ones Import was given.
	Config nn.Config
	// Weights holds every parameter of Config by step-gpu name, float32.
	Weights map[string][]float32
	// Tok is the tokenizer: tokenizer.json's byte-level BPE, or the plain
	// bytes tokenizer for a folder without one whose vocab_size is 257.
	Tok *tokenizer.Tokenizer
	// Notes lists conversions worth telling the user (dtype, tied head).
	Notes []string
}

// Import reads a Hugging Face LLaMA folder (config.json, model.safetensors
// or a sharded model.safetensors.index.json, and tokenizer.json if present)
// and converts it to step-gpu's parameters. B is the micro-batch size to
// record in the config and T the context length (0: max_position_embeddings).
// Every tensor's name and shape is checked; a missing or unexpected tensor,
// a dtype other than F32/F16/BF16, or a config feature step-gpu's model
// lacks is an error. Tied embeddings without lm_head.weight are supported
// by copying the embedding into the head.
func Import(dir string, B, T int) (*Imported, error) {
	hc, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	if hc.MaxPositionEmbeddings <= 0 && T == 0 {
		return nil, fmt.Errorf("import %s: config.json has no max_position_embeddings: give a context length", dir)
	}
	if T > 0 {
		hc.MaxPositionEmbeddings = T
	}
	c, err := hc.Model(B)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	files, err := openWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	byName := map[string]*SafeFile{}
	for _, f := range files {
		for _, n := range f.Names() {
			if _, dup := byName[n]; dup {
				return nil, fmt.Errorf("import %s: tensor %s is in two shards", dir, n)
			}
			byName[n] = f
		}
	}
	im := &Imported{Config: c, Weights: map[string][]float32{}}
	used := map[string]bool{}
	dtypes := map[string]bool{}
	names := NameMap(c)
	for _, s := range c.ParamSpecs() {
		name := names[s.Name]
		if s.Name == "lm_head" && hc.TieWordEmbeddings {
			// A tied model's head is its embedding, whatever lm_head.weight
			// (often absent) holds.
			used[name] = true
			im.Weights[s.Name] = append([]float32(nil), im.Weights["tok_emb"]...)
			im.Notes = append(im.Notes, "tie_word_embeddings: lm_head copied from the token embedding")
			continue
		}
		f, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("import %s: missing tensor %s (for %s %v)", dir, name, s.Name, s.Shape)
		}
		info, _ := f.Info(name)
		if fmt.Sprint(info.Shape) != fmt.Sprint(s.Shape) {
			return nil, fmt.Errorf("import %s: tensor %s has shape %v, config.json implies %v", dir, name, info.Shape, s.Shape)
		}
		w, _, err := f.Read(name)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", dir, err)
		}
		used[name] = true
		dtypes[info.DType] = true
		im.Weights[s.Name] = w
	}
	var extra []string
	for n := range byName {
		// Old transformers versions saved RoPE's inverse frequencies, which
		// are derived from rope_theta.
		if !used[n] && !strings.HasSuffix(n, ".rotary_emb.inv_freq") {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("import %s: unexpected tensors %v (not part of a plain LLaMA)", dir, extra)
	}
	for _, d := range []string{"F16", "BF16"} {
		if dtypes[d] {
			im.Notes = append(im.Notes, d+" tensors converted to float32 exactly")
		}
	}
	if im.Tok, err = importTokenizer(dir, c.V); err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	return im, nil
}

// importTokenizer reads dir/tokenizer.json, or returns the plain-bytes
// tokenizer when there is none and V is its vocabulary size.
func importTokenizer(dir string, V int) (*tokenizer.Tokenizer, error) {
	path := filepath.Join(dir, TokenizerFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if V == tokenizer.MinVocab {
			return tokenizer.Bytes(), nil
		}
		return nil, fmt.Errorf("no %s, and vocab_size %d is not the plain-bytes tokenizer's %d: a step-gpu checkpoint needs its tokenizer",
			TokenizerFile, V, tokenizer.MinVocab)
	}
	tok, err := tokenizer.ImportHF(path)
	if err != nil {
		return nil, fmt.Errorf("%w (only byte-level BPE tokenizers with an end-of-text special token are supported)", err)
	}
	if tok.VocabSize() != V {
		return nil, fmt.Errorf("%s has %d tokens but vocab_size is %d; step-gpu needs them equal", TokenizerFile, tok.VocabSize(), V)
	}
	return tok, nil
}

// openWeights opens model.safetensors, or every shard named by
// model.safetensors.index.json.
func openWeights(dir string) ([]*SafeFile, error) {
	single := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(single); err == nil {
		f, err := OpenSafetensors(single)
		if err != nil {
			return nil, err
		}
		return []*SafeFile{f}, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, WeightsIndex))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s or %s (only safetensors weights are supported)", WeightsFile, WeightsIndex)
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", WeightsIndex, err)
	}
	var shards []string
	seen := map[string]bool{}
	for _, s := range idx.WeightMap {
		if s == "" || filepath.Base(s) != s || s == "." || s == ".." {
			return nil, fmt.Errorf("%s: shard %q is not a file name in the folder", WeightsIndex, s)
		}
		if !seen[s] {
			seen[s] = true
			shards = append(shards, s)
		}
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", WeightsIndex)
	}
	sort.Strings(shards)
	var files []*SafeFile
	for _, s := range shards {
		f, err := OpenSafetensors(filepath.Join(dir, s))
		if err != nil {
			for _, o := range files {
				o.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}
