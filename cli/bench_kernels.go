package cli

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

func init() {
	benchGenerators = append(benchGenerators, matmulCases, attentionCases, normCases, headCases, adamwCases, loraCases)
}

// setupFn is the shape of benchCase.setup.
type setupFn = func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error)

// simple builds a setup from buffer sizes and a record function over them.
func simple(flops, bytes float64, sizes []int, rec func(r *gpu.Recorder, b []*gpu.Buffer) error) setupFn {
	return func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
		bufs, release, err := buffers(d, sizes...)
		if err != nil {
			return nil, 0, 0, nil, err
		}
		return func(r *gpu.Recorder) error { return rec(r, bufs) }, flops, bytes, release, nil
	}
}

// matmulCases measures every layout at the model's linear-layer shapes, or
// at --m/--n/--k when given, plus the two reference shapes.
func matmulCases(cfg nn.Config, c *BenchCmd) []benchCase {
	type shape struct{ M, N, K int }
	var shapes []shape
	if c.M > 0 && c.N > 0 && c.K > 0 {
		shapes = []shape{{c.M, c.N, c.K}}
	} else {
		N := cfg.B * cfg.T
		shapes = []shape{{1024, 1024, 1024}, {4096, 512, 2048}, {N, cfg.C, cfg.C}, {N, cfg.H, cfg.C}}
	}
	var out []benchCase
	for _, s := range shapes {
		for _, l := range []shaders.Layout{shaders.NN, shaders.NT, shaders.TN} {
			s, l := s, l
			out = append(out, benchCase{op: "matmul_" + l.String(), shape: fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K),
				setup: simple(2*float64(s.M)*float64(s.N)*float64(s.K), 0, []int{s.M * s.N, s.M * s.K, s.K * s.N},
					func(r *gpu.Recorder, b []*gpu.Buffer) error {
						return shaders.Matmul(r, b[0], b[1], b[2], s.M, s.N, s.K, l, false)
					})})
		}
	}
	return out
}

// attentionCases measures the fused causal attention forward and backward
// at the model's (B, T, NH, HS) and at T = 256 and 1024 with one sequence.
// FLOPs count the causal half of the two T x T products per head:
// forward 2*B*NH*T*T*HS, backward twice that (four products, recomputed P).
func attentionCases(cfg nn.Config, c *BenchCmd) []benchCase {
	type shape struct{ B, T, NH, HS int }
	shapes := []shape{{cfg.B, cfg.T, cfg.NH, cfg.HS()}, {1, 256, cfg.NH, cfg.HS()}, {1, 1024, cfg.NH, cfg.HS()}}
	var out []benchCase
	for _, s := range shapes {
		s := s
		n := s.B * s.T * s.NH * s.HS
		fwd := 2 * float64(s.B*s.NH) * float64(s.T) * float64(s.T) * float64(s.HS)
		name := fmt.Sprintf("B%d T%d NH%d HS%d", s.B, s.T, s.NH, s.HS)
		lse := s.B * s.NH * s.T
		out = append(out,
			benchCase{op: "attention_fwd", shape: name, setup: simple(fwd, 0, []int{n, lse, n, n, n},
				func(r *gpu.Recorder, b []*gpu.Buffer) error {
					return shaders.AttentionForward(r, b[0], b[1], b[2], b[3], b[4], s.B, s.T, s.NH, s.HS)
				})},
			benchCase{op: "attention_fwd_bwd", shape: name, setup: simple(3*fwd, 0, []int{n, lse, n, n, n, n, n, n, n},
				func(r *gpu.Recorder, b []*gpu.Buffer) error {
					if err := shaders.AttentionForward(r, b[0], b[1], b[2], b[3], b[4], s.B, s.T, s.NH, s.HS); err != nil {
						return err
					}
					return shaders.AttentionBackward(r, b[5], b[6], b[7], b[8], b[2], b[3], b[4], b[0], b[1], s.B, s.T, s.NH, s.HS)
				})})
	}
	return out
}

// normCases measures RMSNorm forward and backward over the model's
// activations.
func normCases(cfg nn.Config, c *BenchCmd) []benchCase {
	N, C := cfg.B*cfg.T, cfg.C
	shape := fmt.Sprintf("N%d C%d", N, C)
	return []benchCase{
		{op: "rmsnorm_fwd", shape: shape, setup: simple(4*float64(N*C), float64(4*(2*N*C+C+N)), []int{N * C, N, N * C, C},
			func(r *gpu.Recorder, b []*gpu.Buffer) error {
				return shaders.RMSNormForward(r, b[0], b[1], b[2], b[3], N, C, 1e-5)
			})},
		{op: "rmsnorm_bwd", shape: shape, setup: simple(8*float64(N*C), float64(4*(3*N*C+2*C+N)), []int{N * C, C, N * C, N * C, C, N},
			func(r *gpu.Recorder, b []*gpu.Buffer) error {
				return shaders.RMSNormBackward(r, b[0], b[1], b[2], b[3], b[4], b[5], N, C)
			})},
	}
}

// headCases measures the fused cross-entropy and the embedding.
func headCases(cfg nn.Config, c *BenchCmd) []benchCase {
	N, C, V := cfg.B*cfg.T, cfg.C, cfg.V
	return []benchCase{
		{op: "crossentropy", shape: fmt.Sprintf("N%d V%d", N, V),
			setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
				rows := min(N, shaders.CrossEntropyRowsPerChunk(d, V))
				bufs, release, err := buffers(d, rows, rows*V, rows)
				if err != nil {
					return nil, 0, 0, nil, err
				}
				if err := bufs[2].WriteU32(0, make([]uint32, rows)); err != nil {
					release()
					return nil, 0, 0, nil, err
				}
				rec := func(r *gpu.Recorder) error {
					return shaders.CrossEntropyChunk(r, bufs[0], bufs[1], bufs[2], 0, rows, V, 1/float32(rows))
				}
				return rec, 5 * float64(rows*V), float64(8 * rows * V), release, nil
			}},
		{op: "embedding_fwd", shape: fmt.Sprintf("N%d C%d V%d", N, C, V),
			setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
				bufs, release, err := buffers(d, N*C, N, V*C)
				if err != nil {
					return nil, 0, 0, nil, err
				}
				toks := make([]uint32, N)
				for i := range toks {
					toks[i] = uint32(i*7919) % uint32(V)
				}
				if err := bufs[1].WriteU32(0, toks); err != nil {
					release()
					return nil, 0, 0, nil, err
				}
				rec := func(r *gpu.Recorder) error { return shaders.EmbeddingForward(r, bufs[0], bufs[1], bufs[2], N, C, V) }
				return rec, 0, float64(8 * N * C), release, nil
			}},
	}
}

// adamwCases measures AdamW over 16M parameters (the figure) and
// the gradient norm over the same; bytes count p, g, m, v read and p, m, v
// written (28 per parameter).
func adamwCases(cfg nn.Config, c *BenchCmd) []benchCase {
	const n = 16 << 20
	return []benchCase{
		{op: "adamw", shape: "16M params",
			setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
				bufs, release, err := buffers(d, n, n, n, n, 8, 2)
				if err != nil {
					return nil, 0, 0, nil, err
				}
				v := make([]float32, n)
				for i := range v {
					v[i] = 1e-3
				}
				init := []error{bufs[3].WriteF32(0, v), bufs[4].WriteF32(0, shaders.AdamWHyper(shaders.AdamWDefaults(1e-3), 10)),
					bufs[5].WriteF32(0, []float32{0.5, 1})}
				for _, err := range init {
					if err != nil {
						release()
						return nil, 0, 0, nil, err
					}
				}
				rec := func(r *gpu.Recorder) error {
					return shaders.AdamW(r, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], n, true)
				}
				return rec, 0, 28 * n, release, nil
			}},
		{op: "gradnorm", shape: "16M params",
			setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
				first, total := shaders.GradNormPlan([]int{n})
				bufs, release, err := buffers(d, n, total, 2)
				if err != nil {
					return nil, 0, 0, nil, err
				}
				rec := func(r *gpu.Recorder) error {
					if err := shaders.GradNormSquares(r, bufs[1], first[0], bufs[0], n); err != nil {
						return err
					}
					return shaders.GradNormFinalize(r, bufs[2], bufs[1], total, 1)
				}
				return rec, 2 * n, 4 * n, release, nil
			}},
	}
}

// loraCases measures the frozen linear with adapters (half-precision W, as
// STEP stores frozen layers) at the model's attention projection shape.
func loraCases(cfg nn.Config, c *BenchCmd) []benchCase {
	N, C := cfg.B*cfg.T, cfg.C
	var out []benchCase
	for _, R := range []int{8, 64} {
		R := R
		shape := fmt.Sprintf("N%d C%d R%d half", N, C, R)
		flops := 2*float64(N*C*C) + 4*float64(N*C*R)
		wWords := (C*C + 1) / 2
		out = append(out,
			benchCase{op: "lora_fwd", shape: shape, setup: simple(flops, 0, []int{N * C, N * R, N * C, wWords, R * C, C * R},
				func(r *gpu.Recorder, b []*gpu.Buffer) error {
					return shaders.LoRAForward(r, b[0], b[1], b[2], b[3], b[4], b[5], N, C, C, R, 2, shaders.Half)
				})},
			benchCase{op: "lora_bwd", shape: shape, setup: simple(2*flops, 0,
				[]int{N * C, R * C, C * R, N * R, N * C, N * C, N * R, wWords, R * C, C * R},
				func(r *gpu.Recorder, b []*gpu.Buffer) error {
					return shaders.LoRABackward(r, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], N, C, C, R, 2, shaders.Half)
				})})
	}
	return out
}
