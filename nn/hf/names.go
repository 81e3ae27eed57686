package hf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/step-gpu/step-gpu/nn"
)

// layerNames maps the suffix of a step-gpu block parameter
// (layers.N.SUFFIX) to the suffix of its Hugging Face name
// (model.layers.N.SUFFIX). SwiGLU's w1 is the gate, w3 the up projection
// and w2 the down projection: y = w2·(SiLU(w1·x) * (w3·x)).
var layerNames = map[string]string{
	"attn_norm": "input_layernorm.weight",
	"attn.wq":   "self_attn.q_proj.weight",
	"attn.wk":   "self_attn.k_proj.weight",
	"attn.wv":   "self_attn.v_proj.weight",
	"attn.wo":   "self_attn.o_proj.weight",
	"mlp_norm":  "post_attention_layernorm.weight",
	"mlp.w1":    "mlp.gate_proj.weight",
	"mlp.w3":    "mlp.up_proj.weight",
	"mlp.w2":    "mlp.down_proj.weight",
}

// globalNames maps the parameters outside the blocks.
var globalNames = map[string]string{
	"tok_emb": "model.embed_tokens.weight",
	"norm":    "model.norm.weight",
	"lm_head": "lm_head.weight",
}

// Name returns the Hugging Face LLaMA tensor name of a step-gpu parameter
// name, e.g. "layers.3.mlp.w1" -> "model.layers.3.mlp.gate_proj.weight".
// Both use the same (out, in) layout for linear maps, so tensors are copied
// as they are.
func Name(param string) (string, error) {
	if n, ok := globalNames[param]; ok {
		return n, nil
	}
	idx, rest, _ := strings.Cut(strings.TrimPrefix(param, "layers."), ".")
	l, err := strconv.Atoi(idx)
	n, ok := layerNames[rest]
	if !strings.HasPrefix(param, "layers.") || err != nil || l < 0 || strconv.Itoa(l) != idx || !ok {
		return "", fmt.Errorf("parameter %q has no Hugging Face LLaMA name", param)
	}
	return fmt.Sprintf("model.layers.%d.%s", l, n), nil
}

// NameMap returns the Hugging Face name of every parameter of a model
// config, keyed by step-gpu name.
func NameMap(c nn.Config) map[string]string {
	out := map[string]string{}
	for _, s := range c.ParamSpecs() {
		n, err := Name(s.Name)
		if err != nil {
			panic(err) // every spec name is mapped: a programmer error otherwise
		}
		out[s.Name] = n
	}
	return out
}
