package cli

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

func init() {
	benchGenerators = append(benchGenerators, dispatchCases, residualCases)
}

// dispatchCases measures the fixed cost of one tiny dispatch recorded among
// many in one submission.
func dispatchCases(cfg nn.Config, c *BenchCmd) []benchCase {
	return []benchCase{{op: "dispatch_overhead", shape: "1 dispatch, 16 floats",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			bufs, release, err := buffers(d, 16, 16)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rec := func(r *gpu.Recorder) error { return shaders.Accumulate(r, bufs[0], bufs[1], 16, 1) }
			return rec, 0, 0, release, nil
		}}}
}

// residualCases measures the residual add over one activation (B, T, C).
func residualCases(cfg nn.Config, c *BenchCmd) []benchCase {
	n := cfg.B * cfg.T * cfg.C
	return []benchCase{{op: "residual_add", shape: fmt.Sprintf("B%d T%d C%d", cfg.B, cfg.T, cfg.C),
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			bufs, release, err := buffers(d, n, n, n)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rec := func(r *gpu.Recorder) error { return shaders.ResidualForward(r, bufs[0], bufs[1], bufs[2], n) }
			return rec, float64(n), float64(12 * n), release, nil
		}}}
}

func init() { benchGenerators = append(benchGenerators, transferCases) }

// transferCases measures host-to-device and device-to-host copies of a
// 64 MiB tensor through the chunked Write and Read paths.
func transferCases(cfg nn.Config, c *BenchCmd) []benchCase {
	const n = 16 << 20 // floats: 64 MiB
	host := make([]float32, n)
	up := benchCase{op: "upload", shape: "64 MiB",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			b, err := d.NewBuffer("bench.upload", gpu.CatScratch, 4*n)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rec := func(r *gpu.Recorder) error {
				if err := b.WriteF32(0, host); err != nil {
					return err
				}
				return d.FlushWrites()
			}
			return rec, 0, 4 * n, b.Release, nil
		}}
	down := benchCase{op: "download", shape: "64 MiB",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			b, err := d.NewBuffer("bench.download", gpu.CatScratch, 4*n)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rec := func(r *gpu.Recorder) error { _, err := b.Read(0, 4*n); return err }
			return rec, 0, 4 * n, b.Release, nil
		}}
	return []benchCase{up, down}
}
