package nn

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/shaders"
)

// Ignore is the target id of a position that does not count in the loss.
const Ignore = 0xFFFFFFFF

// SetBatch flushes r (earlier commands must not see the new inputs) and
// uploads one micro-batch: tokens and targets are (B, T). Out-of-range
// tokens are rejected here, before any kernel sees them.
func (m *Model) SetBatch(r *gpu.Recorder, tokens, targets []uint32) error {
	c := m.Cfg
	N := c.B * c.T
	if len(tokens) != N || len(targets) != N {
		return fmt.Errorf("batch: %d tokens and %d targets, want B*T = %d", len(tokens), len(targets), N)
	}
	for i, t := range targets {
		if t != Ignore && int(t) >= c.V {
			return fmt.Errorf("batch: target %d at position %d is outside the vocabulary (V = %d)", t, i, c.V)
		}
	}
	offsets, positions, err := shaders.BuildTokenIndex(tokens, c.V)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err := r.Flush(); err != nil {
		return err
	}
	for _, w := range []struct {
		b    *gpu.Buffer
		data []uint32
	}{{m.tokens, tokens}, {m.targets, targets}, {m.offsets, offsets}, {m.positions, positions}} {
		if err := w.b.WriteU32(0, w.data); err != nil {
			return err
		}
	}
	return nil
}

// linear records y (N, Cout) = x (N, Cin) · Wᵀ.
func linear(r *gpu.Recorder, y, x, w *gpu.Buffer, N, Cout, Cin int) error {
	return shaders.Matmul(r, y, x, w, N, Cout, Cin, shaders.NT, false)
}

// lin records y (N, Cout) = x (N, Cin) · Wᵀ for the linear map short of
// block l. A frozen block's weight goes through frozenWeight (widened from
// half precision and merged with its adapter, W + (Alpha/R)·B·A, in
// scratch), so every block runs one product on the fast matmul and no
// product is as thin as the adapter's rank.
func (m *Model) lin(r *gpu.Recorder, l int, short string, y, x *gpu.Buffer, N, Cout, Cin int) error {
	name := fmt.Sprintf("layers.%d.%s", l, short)
	if !m.layout.IsFrozen(l) {
		return linear(r, y, x, m.params[name], N, Cout, Cin)
	}
	w, err := m.frozenWeight(r, name, Cout, Cin)
	if err != nil {
		return err
	}
	return linear(r, y, x, w, N, Cout, Cin)
}

// frozenWeight returns a frozen weight (Cout, Cin) as the float32 matrix
// its products use: the weight itself when it is float32 without an
// adapter; otherwise m.wtmp holding it widened from half precision
// (exact) plus, with an adapter, (Alpha/R)·B·A. m.wtmp is valid until the
// next call.
func (m *Model) frozenWeight(r *gpu.Recorder, name string, Cout, Cin int) (*gpu.Buffer, error) {
	w := m.params[name]
	n := Cout * Cin
	switch {
	case m.Format(name) == shaders.Half:
		if err := shaders.UnpackHalfGPU(r, m.wtmp, w, n); err != nil {
			return nil, err
		}
	case m.adapted[name]:
		if err := r.Copy(m.wtmp, 0, w, 0, uint64(4*n)); err != nil {
			return nil, err
		}
	default:
		return w, nil
	}
	if !m.adapted[name] {
		return m.wtmp, nil
	}
	an, bn := LoRANames(name)
	sb, err := m.scaled(r, m.loraSB, m.params[bn], Cout*m.layout.R)
	if err != nil {
		return nil, err
	}
	return m.wtmp, shaders.Matmul(r, m.wtmp, sb, m.params[an], Cout, Cin, m.layout.R, shaders.NN, true)
}

// scaled records dst = (Alpha/R)·src over n elements and returns dst.
func (m *Model) scaled(r *gpu.Recorder, dst, src *gpu.Buffer, n int) (*gpu.Buffer, error) {
	if err := r.Clear(dst, 0, uint64(4*n)); err != nil {
		return nil, err
	}
	return dst, shaders.Accumulate(r, dst, src, n, m.layout.Scale())
}

// Forward records the forward pass of the uploaded batch through the final
// norm, leaving the block activations in place for the backward.
func (m *Model) Forward(r *gpu.Recorder) error {
	c := m.Cfg
	N, C := c.B*c.T, c.C
	eps := float32(c.NormEps)
	x := m.acts[0].x
	if err := shaders.EmbeddingForward(r, x, m.tokens, m.params["tok_emb"], N, C, c.V); err != nil {
		return err
	}
	for l := range c.L {
		next := m.xf
		if l+1 < c.L {
			next = m.acts[l+1].x
		}
		if err := m.blockForward(r, l, next, true); err != nil {
			return err
		}
	}
	return shaders.RMSNormForward(r, m.hf, m.rstdf, m.xf, m.params["norm"], N, C, eps)
}

// blockForward records block l's forward from its input m.acts[l].x into
// its activations and, with full set, on to next (the next block's input).
// Without full it stops after the SwiGLU product: what the backward of a
// recomputed block needs.
func (m *Model) blockForward(r *gpu.Recorder, l int, next *gpu.Buffer, full bool) error {
	c := m.Cfg
	N, C, H, HS := c.B*c.T, c.C, c.H, c.HS()
	eps, theta := float32(c.NormEps), float32(c.RoPE)
	a := m.acts[l]
	p := func(n string) *gpu.Buffer { return m.params[fmt.Sprintf("layers.%d.%s", l, n)] }
	steps := []func() error{
		func() error { return shaders.RMSNormForward(r, a.h1, a.rstd1, a.x, p("attn_norm"), N, C, eps) },
		func() error { return m.lin(r, l, "attn.wq", a.q, a.h1, N, C, C) },
		func() error { return m.lin(r, l, "attn.wk", a.k, a.h1, N, C, C) },
		func() error { return m.lin(r, l, "attn.wv", a.v, a.h1, N, C, C) },
		func() error { return shaders.RoPEForwardInPlace(r, a.q, c.B, c.T, c.NH, HS, theta) },
		func() error { return shaders.RoPEForwardInPlace(r, a.k, c.B, c.T, c.NH, HS, theta) },
		func() error { return shaders.AttentionForward(r, a.att, a.lse, a.q, a.k, a.v, c.B, c.T, c.NH, HS) },
		func() error { return m.lin(r, l, "attn.wo", m.tmp, a.att, N, C, C) },
		func() error { return shaders.ResidualForward(r, a.x2, a.x, m.tmp, N*C) },
		func() error { return shaders.RMSNormForward(r, a.h2, a.rstd2, a.x2, p("mlp_norm"), N, C, eps) },
		func() error { return m.lin(r, l, "mlp.w1", a.g, a.h2, N, H, C) },
		func() error { return m.lin(r, l, "mlp.w3", a.u, a.h2, N, H, C) },
		func() error { return shaders.SwiGLUForward(r, a.s, a.g, a.u, N*H) },
	}
	if full {
		steps = append(steps,
			func() error { return m.lin(r, l, "mlp.w2", m.tmp, a.s, N, C, H) },
			func() error { return shaders.ResidualForward(r, next, a.x2, m.tmp, N*C) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("forward layer %d: %w", l, err)
		}
	}
	return nil
}

// Head records the LM head and the fused cross-entropy over row chunks
// that fit one storage binding, writing per-row losses; with backward set it
// also records the head's backward: dhf into m.dh and the head's weight
// gradient (accumulated). gradScale scales the loss gradient (1 / counted
// tokens of the whole accumulated batch). The loss mean over this batch,
// times lossScale, is added to loss.
func (m *Model) Head(r *gpu.Recorder, backward bool, gradScale float32) error {
	c := m.Cfg
	N, C, V := c.B*c.T, c.C, c.V
	head, dhead := m.params["lm_head"], m.grads["lm_head"]
	for row0 := 0; row0 < N; row0 += m.chunk {
		rows := min(m.chunk, N-row0)
		hf, dhf := m.hf, m.dh
		if m.chunk < N {
			hf, dhf = m.hfChunk, m.dChunk
			if err := r.Copy(hf, 0, m.hf, uint64(4*row0*C), uint64(4*rows*C)); err != nil {
				return err
			}
		}
		if err := linear(r, m.logits, hf, head, rows, V, C); err != nil {
			return fmt.Errorf("head: %w", err)
		}
		if err := shaders.CrossEntropyChunk(r, m.losses, m.logits, m.targets, row0, rows, V, gradScale); err != nil {
			return fmt.Errorf("head: %w", err)
		}
		if !backward {
			continue
		}
		if err := shaders.Matmul(r, dhf, m.logits, head, rows, C, V, shaders.NN, false); err != nil {
			return fmt.Errorf("head backward: %w", err)
		}
		if err := shaders.Matmul(r, dhead, m.logits, hf, V, C, rows, shaders.TN, true); err != nil {
			return fmt.Errorf("head backward: %w", err)
		}
		if m.chunk < N {
			if err := r.Copy(m.dh, uint64(4*row0*C), dhf, 0, uint64(4*rows*C)); err != nil {
				return err
			}
		}
	}
	return nil
}

// LossSum records loss[0] = scale * sum of the per-row losses of the batch.
func (m *Model) LossSum(r *gpu.Recorder, scale float32) error {
	N := m.Cfg.B * m.Cfg.T
	return shaders.SumReduce(r, m.lossSum, m.losses, N, scale)
}

// ReadLoss downloads the value LossSum wrote (waiting for the device).
func (m *Model) ReadLoss() (float32, error) {
	v, err := m.lossSum.ReadF32(0, 1)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// ClearLossAcc records zeroing the step's loss accumulator.
func (m *Model) ClearLossAcc(r *gpu.Recorder) error { return r.Clear(m.lossAcc, 0, m.lossAcc.Size) }

// AddLoss records LossSum(scale) and adds the result to the step's loss
// accumulator, so the mean over several micro-batches needs one readback.
func (m *Model) AddLoss(r *gpu.Recorder, scale float32) error {
	if err := m.LossSum(r, scale); err != nil {
		return err
	}
	return shaders.Accumulate(r, m.lossAcc, m.lossSum, 1, 1)
}

// ReadLossAcc downloads the step's accumulated loss.
func (m *Model) ReadLossAcc() (float32, error) {
	v, err := m.lossAcc.ReadF32(0, 1)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// ForwardLogits records the LM head over the first rows of the final norm
// output (after Forward), flushes, and downloads the logits (rows, V). It
// serves tests and sampling: Head's fused cross-entropy overwrites the
// logits with their gradient, so they cannot be read back from there.
func (m *Model) ForwardLogits(r *gpu.Recorder, rows int) ([]float32, error) {
	c := m.Cfg
	if rows > m.chunk {
		return nil, fmt.Errorf("forward logits: %d rows exceed the chunk of %d", rows, m.chunk)
	}
	if err := linear(r, m.logits, m.hf, m.params["lm_head"], rows, c.V, c.C); err != nil {
		return nil, err
	}
	if err := r.Flush(); err != nil {
		return nil, err
	}
	return m.logits.ReadF32(0, rows*c.V)
}
