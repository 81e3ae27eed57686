package step

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
)

// ProfileStep runs one warm-up step and then one step with every dispatch
// timed alone, and returns the per-kernel profile and the wall time of the
// warm (unprofiled) step for comparison.
func (t *Trainer) ProfileStep() (*gpu.Profile, time.Duration, error) {
	if _, err := t.TrainStep(false); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if _, err := t.TrainStep(false); err != nil {
		return nil, 0, err
	}
	plain := time.Since(start)
	t.D.Profile = gpu.NewProfile()
	defer func() { t.D.Profile = nil }()
	if _, err := t.TrainStep(false); err != nil {
		return nil, 0, err
	}
	return t.D.Profile, plain, nil
}

// PrintProfile writes a profile as a table sorted by time.
func PrintProfile(w io.Writer, p *gpu.Profile, plain time.Duration) {
	var ks []*gpu.KernelTime
	var total time.Duration
	for _, k := range p.Kernels {
		ks = append(ks, k)
		total += k.Time
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Time > ks[j].Time })
	fmt.Fprintf(w, "one training step: %.1f ms as recorded, %.1f ms with every dispatch timed alone\n",
		ms(plain), ms(total))
	fmt.Fprintf(w, "%-28s %6s %10s %6s %10s\n", "kernel", "calls", "ms", "share", "GFLOP/s")
	for _, k := range ks {
		rate := "-"
		if k.Work > 0 && k.Time > 0 {
			rate = fmt.Sprintf("%.2f", k.Work/k.Time.Seconds()/1e9)
		}
		fmt.Fprintf(w, "%-28s %6d %10.2f %5.1f%% %10s\n", k.Name, k.Calls, ms(k.Time), 100*k.Time.Seconds()/total.Seconds(), rate)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
