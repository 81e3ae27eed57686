package step

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
	"github.com/step-gpu/step-gpu/shaders"
)

// SaveWeights writes a checkpoint that holds only a model: its config,
// tokenizer and parameters (every name of cfg.ParamSpecs, float32, group
// trainable), at step 0 with no optimizer state, data cursor or training
// options. It is what `step-gpu import` writes; eval, generate and
// LoadWeights without optimizer state read it like any checkpoint. meta is
// added to the header's free-form facts.
func SaveWeights(path string, cfg nn.Config, tok *tokenizer.Tokenizer, weights map[string][]float32, meta map[string]string) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("save weights %s: %w", path, err)
	}
	if tok.VocabSize() != cfg.V {
		return fmt.Errorf("save weights %s: tokenizer has %d tokens, config says vocab %d", path, tok.VocabSize(), cfg.V)
	}
	cfgBytes, err := msgpack.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("save weights %s: %w", path, err)
	}
	tokBytes, err := tok.MarshalJSON()
	if err != nil {
		return fmt.Errorf("save weights %s: %w", path, err)
	}
	h := checkpoints.Header{Config: cfgBytes, Stage: 1, Stages: 1, Tokenizer: tokBytes,
		Meta: map[string]string{"written": time.Now().UTC().Format(time.RFC3339)}}
	for k, v := range meta {
		h.Meta[k] = v
	}
	var tensors []checkpoints.Tensor
	for _, s := range cfg.ParamSpecs() {
		w, ok := weights[s.Name]
		if !ok {
			return fmt.Errorf("save weights %s: missing parameter %s", path, s.Name)
		}
		if len(w) != s.Numel() {
			return fmt.Errorf("save weights %s: parameter %s has %d values, shape %v needs %d", path, s.Name, len(w), s.Shape, s.Numel())
		}
		tensors = append(tensors, checkpoints.Tensor{Name: s.Name, DType: checkpoints.F32, Shape: s.Shape,
			Group: checkpoints.Trainable, Data: f32Bytes(w)})
	}
	if len(weights) != len(tensors) {
		return fmt.Errorf("save weights %s: %d tensors given but the config has %d parameters", path, len(weights), len(tensors))
	}
	return checkpoints.Write(path, h, tensors)
}

// ReadWeights returns every f32 or f16 tensor of a checked checkpoint
// except optimizer state, as float32 (f16 widened exactly), with its shape:
// the parameters of l.Config and, where present, LoRA adapters
// (NAME.lora_a, NAME.lora_b) and frozen weights stored as halves.
func ReadWeights(l *Loaded) (map[string][]float32, map[string][]int, error) {
	weights, shapes := map[string][]float32{}, map[string][]int{}
	for _, e := range l.R.Header.Tensors {
		if e.Group == checkpoints.Optimizer || (e.DType != checkpoints.F32 && e.DType != checkpoints.F16) {
			continue
		}
		b, _, err := l.R.Read(e.Name)
		if err != nil {
			return nil, nil, err
		}
		w, err := tensorF32(b, e)
		if err != nil {
			return nil, nil, err
		}
		weights[e.Name], shapes[e.Name] = w, e.Shape
	}
	return weights, shapes, nil
}

// tensorF32 decodes a tensor's bytes as float32 values: f32 as they are,
// f16 (two per u32 word, as the GPU packs them) widened exactly, including
// an odd count whose last word is half used.
func tensorF32(b []byte, e checkpoints.TensorEntry) ([]float32, error) {
	if e.DType != checkpoints.F16 {
		return bytesF32(b), nil
	}
	n, err := e.Numel()
	if err != nil {
		return nil, err
	}
	words := make([]uint32, (len(b)+3)/4)
	for i := range words {
		var w [4]byte
		copy(w[:], b[4*i:])
		words[i] = binary.LittleEndian.Uint32(w[:])
	}
	return shaders.UnpackHalf(words, int(n)), nil
}
