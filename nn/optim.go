package nn

import (
	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/shaders"
)

// MaxGradNorm is the global gradient-norm clip (STEP.md: 1.0).
const MaxGradNorm = 1.0

// OptimizerStep records the global gradient norm, the clip scale and an
// AdamW update of every parameter for optimizer step t (1-based). The
// per-step values (learning rate, bias corrections) go to a small storage
// buffer written here, so no bind group changes between steps. The caller
// must have flushed r since the last step's AdamW was recorded.
func (m *Model) OptimizerStep(r *gpu.Recorder, cfg shaders.AdamWConfig, t int) error {
	if err := r.Flush(); err != nil {
		return err
	}
	if err := m.hyper.WriteF32(0, shaders.AdamWHyper(cfg, t)); err != nil {
		return err
	}
	for _, s := range m.specs {
		if err := shaders.GradNormSquares(r, m.partials, m.normSlots[s.Name], m.grads[s.Name], s.Numel()); err != nil {
			return err
		}
	}
	if err := shaders.GradNormFinalize(r, m.clip, m.partials, m.nPartials, MaxGradNorm); err != nil {
		return err
	}
	for _, s := range m.specs {
		if err := shaders.AdamW(r, m.params[s.Name], m.grads[s.Name], m.m[s.Name], m.v[s.Name], m.hyper, m.clip,
			s.Numel(), s.Decay); err != nil {
			return err
		}
	}
	return nil
}

// ReadGradNorm downloads the global gradient norm computed by the last
// OptimizerStep (before clipping).
func (m *Model) ReadGradNorm() (float32, error) {
	v, err := m.clip.ReadF32(0, 1)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// Ledger returns the device's ledger (the model's memory measurement).
func (m *Model) Ledger() *gpu.Ledger { return m.D.Ledger }
