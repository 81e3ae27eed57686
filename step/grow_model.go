package step

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
)

// ModelWeights downloads every base tensor of a model (cfg.ParamSpecs
// names; frozen half weights widened exactly), without its adapters.
func ModelWeights(m *nn.Model) (map[string][]float32, error) {
	w := map[string][]float32{}
	for _, s := range m.Cfg.ParamSpecs() {
		v, err := m.ReadParam(s.Name)
		if err != nil {
			return nil, err
		}
		w[s.Name] = v
	}
	return w, nil
}

// GrowModel performs one STEP growth on the device: it merges m's adapters
// into their frozen weights, downloads the weights, releases m (so the old
// and the new model never hold memory together), grows them (Grow), and
// allocates the grown model with every old block frozen and every new one
// trained. The new model's adapters follow tmpl (R, Alpha, Targets,
// Format; its Frozen is ignored) and start fresh (A drawn from seed, B = 0),
// as does all AdamW state. m is released even when growth fails.
func GrowModel(d *gpu.Device, m *nn.Model, g Growth, tmpl nn.Layout, seed uint64) (*nn.Model, Grown, error) {
	cfg := m.Cfg
	err := m.MergeAdapters()
	var w map[string][]float32
	if err == nil {
		w, err = ModelWeights(m)
	}
	m.Release()
	if err != nil {
		return nil, Grown{}, fmt.Errorf("grow: read the trained model: %w", err)
	}
	grown, err := Grow(cfg, w, g)
	if err != nil {
		return nil, Grown{}, err
	}
	lo := tmpl
	lo.Frozen = make([]bool, grown.Config.L)
	for i, isNew := range grown.New {
		lo.Frozen[i] = !isNew
	}
	nm, err := nn.NewStagedModel(d, grown.Config, lo, seed)
	if err != nil {
		return nil, Grown{}, fmt.Errorf("grow: allocate the %d-layer model: %w", grown.Config.L, err)
	}
	for _, s := range grown.Config.ParamSpecs() {
		if err := nm.WriteParam(s.Name, grown.Weights[s.Name]); err != nil {
			nm.Release()
			return nil, Grown{}, err
		}
	}
	return nm, grown, nil
}

// ledgerLine formats a ledger snapshot's peaks by category in MiB.
func ledgerLine(s gpu.Snapshot) string {
	out := ""
	for _, c := range gpu.Categories() {
		if v := s.Peak[c.String()]; v > 0 {
			out += fmt.Sprintf(" %s %.2f", c, gpu.MiB(v))
		}
	}
	return out
}
