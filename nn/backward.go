package nn

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/shaders"
)

// dlinear records the backward of y = x·Wᵀ: dx (N, Cin) = dy·W (added to dx
// when accumulate is set) and dW (Cout, Cin) += dyᵀ·x.
func dlinear(r *gpu.Recorder, dx, dw, dy, x, w *gpu.Buffer, N, Cout, Cin int, accumulate bool) error {
	if err := shaders.Matmul(r, dx, dy, w, N, Cin, Cout, shaders.NN, accumulate); err != nil {
		return err
	}
	return shaders.Matmul(r, dw, dy, x, Cout, Cin, N, shaders.TN, true)
}

// dlin records the backward of the linear map short of block l, y = x·Wᵀ:
// dx (N, Cin) = dy·W, added to dx when accumulate is set. A trained block
// accumulates dW += dyᵀ·x. A frozen one gets no weight gradient of its
// own; with an adapter (W_eff = W + s·B·A, s = Alpha/R) the input gradient
// uses W_eff, and the adapter's gradients come from the effective weight's
// gradient G = dyᵀ·x (in scratch): dB += s·G·Aᵀ and dA += s·Bᵀ·G, so no
// product is as thin as the rank.
func (m *Model) dlin(r *gpu.Recorder, l int, short string, dx, dy, x *gpu.Buffer, N, Cout, Cin int, accumulate bool) error {
	name := fmt.Sprintf("layers.%d.%s", l, short)
	if !m.layout.IsFrozen(l) {
		return dlinear(r, dx, m.grads[name], dy, x, m.params[name], N, Cout, Cin, accumulate)
	}
	w, err := m.frozenWeight(r, name, Cout, Cin)
	if err != nil {
		return err
	}
	if err := shaders.Matmul(r, dx, dy, w, N, Cin, Cout, shaders.NN, accumulate); err != nil {
		return err
	}
	if !m.adapted[name] {
		return nil
	}
	an, bn := LoRANames(name)
	R := m.layout.R
	sb, err := m.scaled(r, m.loraSB, m.params[bn], Cout*R)
	if err != nil {
		return err
	}
	sa, err := m.scaled(r, m.loraSA, m.params[an], R*Cin)
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error { return shaders.Matmul(r, m.gtmp, dy, x, Cout, Cin, N, shaders.TN, false) },          // G
		func() error { return shaders.Matmul(r, m.grads[bn], m.gtmp, sa, Cout, R, Cin, shaders.NT, true) }, // dB
		func() error { return shaders.Matmul(r, m.grads[an], sb, m.gtmp, R, Cin, Cout, shaders.TN, true) }, // dA
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// Backward records the backward pass from the head's dhf (left in m.dh by
// Head) down to the embedding, walking the blocks L-1..0. Parameter
// gradients accumulate (+=), so micro-batches add up; activation gradients
// are overwritten, except the residual stream's, which sums its branches.
func (m *Model) Backward(r *gpu.Recorder) error {
	c := m.Cfg
	N, C, H, HS := c.B*c.T, c.C, c.H, c.HS()
	theta := float32(c.RoPE)
	// Final norm: dx = d(norm)/d(xf) · dhf.
	if err := shaders.RMSNormBackward(r, m.dx, m.grads["norm"], m.dh, m.xf, m.params["norm"], m.rstdf, N, C); err != nil {
		return fmt.Errorf("backward final norm: %w", err)
	}
	for l := c.L - 1; l >= 0; l-- {
		// With Recompute the blocks share their activation buffers, which
		// hold the top block's after the forward: recompute the others.
		if m.layout.Recompute && l < c.L-1 {
			if err := m.blockForward(r, l, nil, false); err != nil {
				return fmt.Errorf("backward: recompute: %w", err)
			}
		}
		a := m.acts[l]
		name := func(n string) string { return fmt.Sprintf("layers.%d.%s", l, n) }
		p := func(n string) *gpu.Buffer { return m.params[name(n)] }
		gain := func(n string) *gpu.Buffer { // a frozen gain's gradient is discarded
			if m.layout.IsFrozen(l) {
				return m.dgain
			}
			return m.grads[name(n)]
		}
		steps := []func() error{
			// MLP branch: out = x2 + s·w2ᵀ, s = silu(g)*u, g = h2·w1ᵀ, u = h2·w3ᵀ, h2 = norm(x2).
			func() error { return m.dlin(r, l, "mlp.w2", m.ds, m.dx, a.s, N, C, H, false) },
			func() error { return shaders.SwiGLUBackward(r, m.dg, m.du, m.ds, a.g, a.u, N*H) },
			func() error { return m.dlin(r, l, "mlp.w1", m.dh, m.dg, a.h2, N, H, C, false) },
			func() error { return m.dlin(r, l, "mlp.w3", m.dh, m.du, a.h2, N, H, C, true) },
			func() error {
				return shaders.RMSNormBackward(r, m.dx2, gain("mlp_norm"), m.dh, a.x2, p("mlp_norm"), a.rstd2, N, C)
			},
			func() error { return shaders.Accumulate(r, m.dx2, m.dx, N*C, 1) }, // residual path
			// Attention branch: x2 = x + att·woᵀ, att = attn(rope(h1·wqᵀ), rope(h1·wkᵀ), h1·wvᵀ), h1 = norm(x).
			func() error { return m.dlin(r, l, "attn.wo", m.datt, m.dx2, a.att, N, C, C, false) },
			func() error {
				return shaders.AttentionBackward(r, m.dq, m.dk, m.dv, m.datt, a.q, a.k, a.v, a.att, a.lse, c.B, c.T, c.NH, HS)
			},
			func() error { return shaders.RoPEBackwardInPlace(r, m.dq, c.B, c.T, c.NH, HS, theta) },
			func() error { return shaders.RoPEBackwardInPlace(r, m.dk, c.B, c.T, c.NH, HS, theta) },
			func() error { return m.dlin(r, l, "attn.wq", m.dh, m.dq, a.h1, N, C, C, false) },
			func() error { return m.dlin(r, l, "attn.wk", m.dh, m.dk, a.h1, N, C, C, true) },
			func() error { return m.dlin(r, l, "attn.wv", m.dh, m.dv, a.h1, N, C, C, true) },
			func() error {
				return shaders.RMSNormBackward(r, m.dx, gain("attn_norm"), m.dh, a.x, p("attn_norm"), a.rstd1, N, C)
			},
			func() error { return shaders.Accumulate(r, m.dx, m.dx2, N*C, 1) }, // residual path
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return fmt.Errorf("backward layer %d: %w", l, err)
			}
		}
	}
	if err := shaders.EmbeddingBackward(r, m.grads["tok_emb"], m.dx, m.offsets, m.positions, N, C, c.V); err != nil {
		return fmt.Errorf("backward embedding: %w", err)
	}
	return nil
}

// ZeroGrads records zeroing every gradient buffer.
func (m *Model) ZeroGrads(r *gpu.Recorder) error {
	for _, s := range m.specs { // spec order: fixed, no per-step sorting
		g := m.grads[s.Name]
		if err := r.Clear(g, 0, g.Size); err != nil {
			return err
		}
	}
	if m.dgain != nil { // keeps the discarded sum finite
		return r.Clear(m.dgain, 0, m.dgain.Size)
	}
	return nil
}
