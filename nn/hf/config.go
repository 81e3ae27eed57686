package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/step-gpu/step-gpu/nn"
)

// LlamaConfig is the part of a Hugging Face LLaMA config.json that step-gpu
// writes and reads. Pointer fields are optional on import: nil means the
// key is absent (or null).
type LlamaConfig struct {
	Architectures         []string `json:"architectures"`
	ModelType             string   `json:"model_type"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      *int     `json:"num_key_value_heads"`
	VocabSize             int      `json:"vocab_size"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RoPETheta             *float64 `json:"rope_theta"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	HiddenAct             string   `json:"hidden_act"`
	TorchDType            string   `json:"torch_dtype"`
	// BOSTokenID and EOSTokenID are the end-of-document token when the
	// model has a tokenizer (step-gpu uses one token for both).
	BOSTokenID *int `json:"bos_token_id,omitempty"`
	EOSTokenID *int `json:"eos_token_id,omitempty"`
	// The fields below are only read, to refuse what step-gpu's model lacks.
	RoPEScaling   json.RawMessage `json:"rope_scaling,omitempty"`
	AttentionBias bool            `json:"attention_bias,omitempty"`
	MLPBias       bool            `json:"mlp_bias,omitempty"`
	HeadDim       *int            `json:"head_dim,omitempty"`
}

// DefaultRoPETheta is the rope_theta transformers assumes when a LLaMA
// config.json has none.
const DefaultRoPETheta = 10000

// ConfigFromModel returns the config.json of a step-gpu model: a LLaMA with
// as many key/value heads as query heads, untied embeddings, SiLU, and the
// context length T as max_position_embeddings.
func ConfigFromModel(c nn.Config) LlamaConfig {
	kv, theta := c.NH, c.RoPE
	return LlamaConfig{
		Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama",
		HiddenSize: c.C, IntermediateSize: c.H, NumHiddenLayers: c.L, NumAttentionHeads: c.NH, NumKeyValueHeads: &kv,
		VocabSize: c.V, RMSNormEps: c.NormEps, RoPETheta: &theta, MaxPositionEmbeddings: c.T,
		TieWordEmbeddings: false, HiddenAct: "silu", TorchDType: "float32",
	}
}

// Model returns the step-gpu config of a LLaMA config.json, with micro-batch
// size B, or an error naming the first feature step-gpu's model does not
// have (grouped-query attention, RoPE scaling, biases, another activation,
// a head_dim other than hidden_size/num_attention_heads).
func (h LlamaConfig) Model(B int) (nn.Config, error) {
	if h.ModelType != "llama" {
		return nn.Config{}, fmt.Errorf("config.json: model_type %q, only \"llama\" is supported", h.ModelType)
	}
	if h.NumKeyValueHeads != nil && *h.NumKeyValueHeads != h.NumAttentionHeads {
		return nn.Config{}, fmt.Errorf("config.json: num_key_value_heads %d differs from num_attention_heads %d: grouped-query attention is not supported",
			*h.NumKeyValueHeads, h.NumAttentionHeads)
	}
	if len(h.RoPEScaling) > 0 && string(h.RoPEScaling) != "null" {
		return nn.Config{}, fmt.Errorf("config.json: rope_scaling %s is not supported (plain RoPE only)", h.RoPEScaling)
	}
	if h.AttentionBias || h.MLPBias {
		return nn.Config{}, fmt.Errorf("config.json: attention_bias or mlp_bias is set: linear biases are not supported")
	}
	if h.HiddenAct != "silu" {
		return nn.Config{}, fmt.Errorf("config.json: hidden_act %q, only \"silu\" is supported", h.HiddenAct)
	}
	if h.NumAttentionHeads > 0 && h.HeadDim != nil && *h.HeadDim != h.HiddenSize/h.NumAttentionHeads {
		return nn.Config{}, fmt.Errorf("config.json: head_dim %d is not hidden_size/num_attention_heads = %d", *h.HeadDim, h.HiddenSize/h.NumAttentionHeads)
	}
	theta := float64(DefaultRoPETheta)
	if h.RoPETheta != nil {
		theta = *h.RoPETheta
	}
	c := nn.Config{V: h.VocabSize, C: h.HiddenSize, L: h.NumHiddenLayers, NH: h.NumAttentionHeads, H: h.IntermediateSize,
		T: h.MaxPositionEmbeddings, B: B, RoPE: theta, NormEps: h.RMSNormEps}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config.json: %w", err)
	}
	return c, nil
}

// ReadConfig reads dir/config.json.
func ReadConfig(dir string) (LlamaConfig, error) {
	var h LlamaConfig
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return h, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("read config %s: %w", filepath.Join(dir, "config.json"), err)
	}
	return h, nil
}
