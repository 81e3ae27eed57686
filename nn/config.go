package nn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/step-gpu/step-gpu/nn/ref"
)

// Config is a LLaMA-style decoder: untied token embedding and LM head,
// pre-norm RMSNorm blocks with rotary attention and a SwiGLU MLP.
type Config struct {
	V       int     `json:"vocab_size" msgpack:"vocab_size"` // vocabulary
	C       int     `json:"d_model" msgpack:"d_model"`       // model width
	L       int     `json:"n_layers" msgpack:"n_layers"`     // transformer blocks
	NH      int     `json:"n_heads" msgpack:"n_heads"`       // attention heads
	H       int     `json:"d_ff" msgpack:"d_ff"`             // SwiGLU hidden width
	T       int     `json:"seq_len" msgpack:"seq_len"`       // context length
	B       int     `json:"batch" msgpack:"batch"`           // micro-batch size (sequences)
	RoPE    float64 `json:"rope_theta" msgpack:"rope_theta"` // RoPE base
	NormEps float64 `json:"norm_eps" msgpack:"norm_eps"`     // RMSNorm epsilon
}

// HS returns the head size C/NH.
func (c Config) HS() int { return c.C / c.NH }

// Validate returns an error naming the first inconsistent field.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.V}, {"d_model", c.C}, {"n_layers", c.L}, {"n_heads", c.NH}, {"d_ff", c.H}, {"seq_len", c.T}, {"batch", c.B}} {
		if f.v <= 0 {
			return fmt.Errorf("config: %s must be positive, got %d", f.name, f.v)
		}
	}
	if c.C%c.NH != 0 {
		return fmt.Errorf("config: n_heads %d does not divide d_model %d", c.NH, c.C)
	}
	if c.HS()%2 != 0 {
		return fmt.Errorf("config: head size %d must be even for rotary embeddings", c.HS())
	}
	if c.RoPE <= 1 {
		return fmt.Errorf("config: rope_theta must be > 1, got %g", c.RoPE)
	}
	if c.NormEps <= 0 || c.NormEps >= 1 {
		return fmt.Errorf("config: norm_eps must be in (0, 1), got %g", c.NormEps)
	}
	return nil
}

// LayerParams returns the parameter count of one transformer block: four
// C x C attention projections, three SwiGLU matrices and two RMSNorm gains.
func (c Config) LayerParams() int { return 4*c.C*c.C + 3*c.C*c.H + 2*c.C }

// Params returns the model's total parameter count: the blocks, the untied
// embedding and head, and the final norm.
func (c Config) Params() int { return c.L*c.LayerParams() + 2*c.V*c.C + c.C }

// presets are the named configurations. d256 and d512 are the issue's
// throughput shapes; 368m is the STEP paper's common LLaMA config.
var presets = map[string]Config{
	"tiny":   {V: 512, C: 128, L: 4, NH: 4, H: 344, T: 128, B: 8, RoPE: 10000, NormEps: 1e-5},
	"small":  {V: 4096, C: 256, L: 6, NH: 4, H: 688, T: 256, B: 8, RoPE: 10000, NormEps: 1e-5},
	"laptop": {V: 8192, C: 512, L: 8, NH: 8, H: 1376, T: 512, B: 8, RoPE: 10000, NormEps: 1e-5},
	"d256":   {V: 4096, C: 256, L: 4, NH: 4, H: 688, T: 256, B: 8, RoPE: 10000, NormEps: 1e-5},
	"d512":   {V: 4096, C: 512, L: 8, NH: 8, H: 1376, T: 256, B: 8, RoPE: 10000, NormEps: 1e-5},
	"368m":   {V: 32000, C: 1024, L: 24, NH: 16, H: 2736, T: 1024, B: 8, RoPE: 10000, NormEps: 1e-5},
}

// Preset returns the named configuration, or an error listing the names.
func Preset(name string) (Config, error) {
	c, ok := presets[strings.ToLower(name)]
	if !ok {
		return Config{}, fmt.Errorf("unknown preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	return c, nil
}

// PresetNames lists the preset names, sorted.
func PresetNames() []string {
	out := make([]string, 0, len(presets))
	for k := range presets {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Ref returns the float64 reference model's view of the config.
func (c Config) Ref() ref.ModelConfig {
	return ref.ModelConfig{V: c.V, C: c.C, L: c.L, NH: c.NH, H: c.H, RoPE: c.RoPE, NormEps: c.NormEps}
}
