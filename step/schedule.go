package step

import (
	"fmt"
	"math"
)

// Schedule is a linear warmup followed by a cosine decay to MinLR over
// Steps optimizer steps. STEP gives each stage its own schedule.
type Schedule struct {
	MaxLR  float64 `json:"max_lr" msgpack:"max_lr"`
	MinLR  float64 `json:"min_lr" msgpack:"min_lr"`
	Warmup int     `json:"warmup" msgpack:"warmup"`
	Steps  int     `json:"steps" msgpack:"steps"`
}

// Validate returns an error naming the first bad field.
func (s Schedule) Validate() error {
	switch {
	case s.Steps <= 0:
		return fmt.Errorf("schedule: steps must be positive, got %d", s.Steps)
	case s.Warmup < 0 || s.Warmup > s.Steps:
		return fmt.Errorf("schedule: warmup %d outside 0..steps (%d)", s.Warmup, s.Steps)
	case !(s.MaxLR > 0) || math.IsInf(s.MaxLR, 0):
		return fmt.Errorf("schedule: max learning rate must be positive and finite, got %g", s.MaxLR)
	case !(s.MinLR >= 0) || s.MinLR > s.MaxLR:
		return fmt.Errorf("schedule: min learning rate %g outside [0, max %g]", s.MinLR, s.MaxLR)
	}
	return nil
}

// LR returns the learning rate of 1-based step t: MaxLR*t/Warmup during
// warmup, then MinLR + (MaxLR-MinLR)*(1+cos(pi*p))/2 with p the fraction of
// the decay done; steps past the end stay at MinLR.
func (s Schedule) LR(t int) float64 {
	if t <= s.Warmup {
		return s.MaxLR * float64(t) / float64(max(1, s.Warmup))
	}
	decay := s.Steps - s.Warmup
	if decay <= 0 || t >= s.Steps {
		return s.MinLR
	}
	p := float64(t-s.Warmup) / float64(decay)
	return s.MinLR + (s.MaxLR-s.MinLR)*(1+math.Cos(math.Pi*p))/2
}
