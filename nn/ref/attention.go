package ref

import "math"

// attnRow returns the offset of head h's slice of row t in a (B, T, C)
// tensor with C = NH*HS.
func attnRow(b, t, h, T, NH, HS int) int { return (b*T+t)*NH*HS + h*HS }

// attnProbs fills p[0..t] with the causal softmax of query t of head (b, h)
// over keys 0..t, scores scaled by 1/sqrt(HS), and returns its log-sum-exp.
func attnProbs(p, q, k []float64, b, t, h, T, NH, HS int) float64 {
	scale := 1 / math.Sqrt(float64(HS))
	qi := attnRow(b, t, h, T, NH, HS)
	maxv := math.Inf(-1)
	for j := 0; j <= t; j++ {
		kj := attnRow(b, j, h, T, NH, HS)
		s := 0.0
		for d := 0; d < HS; d++ {
			s += q[qi+d] * k[kj+d]
		}
		p[j] = s * scale
		maxv = math.Max(maxv, p[j])
	}
	sum := 0.0
	for j := 0; j <= t; j++ {
		p[j] = math.Exp(p[j] - maxv)
		sum += p[j]
	}
	for j := 0; j <= t; j++ {
		p[j] /= sum
	}
	return maxv + math.Log(sum)
}

// AttentionForward returns out = softmax(q·kᵀ/sqrt(HS) + causal mask)·v per
// head and the row log-sum-exp lse of the masked, scaled scores. q, k, v and
// out are (B, T, C) with C = NH*HS, head h in columns h*HS..h*HS+HS-1; lse is
// (B, NH, T). Query t attends keys 0..t.
func AttentionForward(q, k, v []float64, B, T, NH, HS int) (out, lse []float64) {
	out = make([]float64, B*T*NH*HS)
	lse = make([]float64, B*NH*T)
	p := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			for t := 0; t < T; t++ {
				lse[(b*NH+h)*T+t] = attnProbs(p, q, k, b, t, h, T, NH, HS)
				oi := attnRow(b, t, h, T, NH, HS)
				for j := 0; j <= t; j++ {
					vj := attnRow(b, j, h, T, NH, HS)
					for d := 0; d < HS; d++ {
						out[oi+d] += p[j] * v[vj+d]
					}
				}
			}
		}
	}
	return out, lse
}

// AttentionBackward returns the gradients of q, k and v given dout, the
// gradient of AttentionForward's out, all (B, T, C). It recomputes the
// probabilities P and applies the softmax backward
// dS_tj = P_tj (dP_tj - Σ_j' P_tj' dP_tj') with dP_tj = dout_t·v_j; then
// dv_j += P_tj dout_t, dq_t += dS_tj k_j / sqrt(HS), dk_j += dS_tj q_t / sqrt(HS).
func AttentionBackward(dout, q, k, v []float64, B, T, NH, HS int) (dq, dk, dv []float64) {
	n := B * T * NH * HS
	dq, dk, dv = make([]float64, n), make([]float64, n), make([]float64, n)
	scale := 1 / math.Sqrt(float64(HS))
	p := make([]float64, T)
	dp := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			for t := 0; t < T; t++ {
				attnProbs(p, q, k, b, t, h, T, NH, HS)
				ti := attnRow(b, t, h, T, NH, HS)
				dsum := 0.0
				for j := 0; j <= t; j++ {
					vj := attnRow(b, j, h, T, NH, HS)
					dp[j] = 0
					for d := 0; d < HS; d++ {
						dp[j] += dout[ti+d] * v[vj+d]
						dv[vj+d] += p[j] * dout[ti+d]
					}
					dsum += p[j] * dp[j]
				}
				for j := 0; j <= t; j++ {
					ds := p[j] * (dp[j] - dsum) * scale
					kj := attnRow(b, j, h, T, NH, HS)
					for d := 0; d < HS; d++ {
						dq[ti+d] += ds * k[kj+d]
						dk[kj+d] += ds * q[ti+d]
					}
				}
			}
		}
	}
	return dq, dk, dv
}
