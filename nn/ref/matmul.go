package ref

import "fmt"

// MatmulLayout says how the two operands of Matmul are stored. It mirrors
// shaders.Layout without importing it (ref imports nothing GPU-related).
type MatmulLayout int

// The three storage layouts a training step needs.
const (
	NN MatmulLayout = iota // out (M,N) = A (M,K) · B (K,N)
	NT                     // out (M,N) = A (M,K) · B (N,K)ᵀ   (linear forward: y = x·Wᵀ)
	TN                     // out (M,N) = A (K,M)ᵀ · B (K,N)   (weight gradient: dW = dyᵀ·x)
)

// String names the layout.
func (l MatmulLayout) String() string {
	switch l {
	case NN:
		return "NN"
	case NT:
		return "NT"
	case TN:
		return "TN"
	}
	return fmt.Sprintf("MatmulLayout(%d)", int(l))
}

// matmulAt returns A's element (m, k) of op(A) and matmulBt B's element
// (k, n) of op(B), whatever the storage layout.
func matmulAt(a []float64, M, K int, layout MatmulLayout, m, k int) float64 {
	if layout == TN {
		return a[k*M+m] // A stored (K, M)
	}
	return a[m*K+k] // A stored (M, K)
}

func matmulBt(b []float64, N, K int, layout MatmulLayout, k, n int) float64 {
	if layout == NT {
		return b[n*K+k] // B stored (N, K)
	}
	return b[k*N+n] // B stored (K, N)
}

// Matmul returns out (M, N) = op(A) · op(B), out[m,n] = Σ_k op(A)[m,k]·op(B)[k,n],
// with op given by the layout: A is (M, K) for NN and NT and (K, M) for TN;
// B is (K, N) for NN and TN and (N, K) for NT.
func Matmul(a, b []float64, M, N, K int, layout MatmulLayout) []float64 {
	if layout != NN && layout != NT && layout != TN {
		panic("ref.Matmul: unknown layout " + layout.String())
	}
	out := make([]float64, M*N)
	for m := 0; m < M; m++ {
		for n := 0; n < N; n++ {
			var s float64
			for k := 0; k < K; k++ {
				s += matmulAt(a, M, K, layout, m, k) * matmulBt(b, N, K, layout, k, n)
			}
			out[m*N+n] = s
		}
	}
	return out
}

// MatmulBackward returns the gradients of a scalar loss with respect to A and
// B (in A's and B's storage layouts) given dOut (M, N), the gradient with
// respect to out = Matmul(a, b, M, N, K, layout). From out = op(A)·op(B):
// d op(A) = dOut·op(B)ᵀ and d op(B) = op(A)ᵀ·dOut, each written back in the
// operand's own storage order:
//
//	NN: dA (M,K) = dOut·Bᵀ           dB (K,N) = Aᵀ·dOut
//	NT: dA (M,K) = dOut·B            dB (N,K) = dOutᵀ·A
//	TN: dA (K,M) = B·dOutᵀ           dB (K,N) = A·dOut
func MatmulBackward(dout, a, b []float64, M, N, K int, layout MatmulLayout) (da, db []float64) {
	switch layout {
	case NN:
		return Matmul(dout, b, M, K, N, NT), Matmul(a, dout, K, N, M, TN)
	case NT:
		return Matmul(dout, b, M, K, N, NN), Matmul(dout, a, N, K, M, TN)
	case TN:
		return Matmul(b, dout, K, M, N, NT), Matmul(a, dout, K, N, M, NN)
	}
	panic("ref.MatmulBackward: unknown layout " + layout.String())
}
