package hf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// The files of a Hugging Face model folder that step-gpu writes and reads.
const (
	ConfigFile      = "config.json"
	WeightsFile     = "model.safetensors"
	WeightsIndex    = "model.safetensors.index.json"
	TokenizerFile   = "tokenizer.json"
	safetensorsMeta = "pt" // transformers refuses safetensors without format pt (or tf, flax, mlx)
)

// Export writes a step-gpu model to dir (created if needed) as a Hugging
// Face LLaMA folder: config.json, model.safetensors (F32, standard LLaMA
// tensor names, see Name) and, when tok is not nil, tokenizer.json.
// weights must hold exactly the parameters of c (merge LoRA adapters first
// with MergeAdapters). Tensors are copied unchanged: both sides store linear
// maps as (out, in) and use the same rotate-half RoPE, so q_proj and k_proj
// need no permutation.
func Export(dir string, c nn.Config, weights map[string][]float32, tok *tokenizer.Tokenizer) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	specs := c.ParamSpecs()
	known := map[string]bool{}
	tensors := make([]Tensor, 0, len(specs))
	for _, s := range specs {
		known[s.Name] = true
		w, ok := weights[s.Name]
		if !ok {
			return fmt.Errorf("export: missing parameter %s", s.Name)
		}
		if len(w) != s.Numel() {
			return fmt.Errorf("export: parameter %s has %d values, shape %v needs %d", s.Name, len(w), s.Shape, s.Numel())
		}
		name, err := Name(s.Name)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		tensors = append(tensors, Tensor{Name: name, Shape: s.Shape, Data: w})
	}
	var extra []string
	for n := range weights {
		if !known[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("export: tensors %v are not parameters of the model (merge LoRA adapters first)", extra)
	}
	if tok != nil && tok.VocabSize() != c.V {
		return fmt.Errorf("export: tokenizer has %d tokens but vocab_size is %d", tok.VocabSize(), c.V)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := WriteSafetensors(filepath.Join(dir, WeightsFile), tensors, map[string]string{"format": safetensorsMeta}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	hc := ConfigFromModel(c)
	if tok != nil {
		eot := int(tok.EOT())
		hc.BOSTokenID, hc.EOSTokenID = &eot, &eot
	}
	if err := writeJSON(dir, ConfigFile, hc); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if tok != nil {
		if err := tok.ExportHF(filepath.Join(dir, TokenizerFile)); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}
