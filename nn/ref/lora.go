package ref

// LoRA linear with a frozen base weight (STEP's trainable path):
//
//	x (N, Cin), frozen W (Cout, Cin), adapters A (R, Cin) and B (Cout, R),
//	scale s = alpha/R.
//	forward:  u = x·Aᵀ (N, R), saved for the backward;
//	          y = x·Wᵀ + s·u·Bᵀ (N, Cout).
//	backward: du = s·dy·B (N, R); dB += s·dyᵀ·u; dA += duᵀ·x;
//	          dx = dy·W + du·A.
//
// W is frozen: it holds no gradient, so the backward has no dW.

// LoRAForward computes u = x·Aᵀ and y = x·Wᵀ + scale·u·Bᵀ, overwriting y
// and u. With R = 0 it is the frozen linear y = x·Wᵀ (u, a, b unused).
func LoRAForward(y, u, x, w, a, b []float64, N, Cin, Cout, R int, scale float64) {
	for n := 0; n < N; n++ {
		xr := x[n*Cin : (n+1)*Cin]
		for r := 0; r < R; r++ {
			s := 0.0
			for i := 0; i < Cin; i++ {
				s += xr[i] * a[r*Cin+i]
			}
			u[n*R+r] = s
		}
		for o := 0; o < Cout; o++ {
			s := 0.0
			for i := 0; i < Cin; i++ {
				s += xr[i] * w[o*Cin+i]
			}
			t := 0.0
			for r := 0; r < R; r++ {
				t += u[n*R+r] * b[o*R+r]
			}
			y[n*Cout+o] = s + scale*t
		}
	}
}

// LoRABackward computes the gradients of the LoRA linear from dy (N, Cout)
// and the saved u (N, R): du = scale·dy·B (N, R) and dx = dy·W + du·A
// (N, Cin) are overwritten; db += scale·dyᵀ·u (Cout, R) and da += duᵀ·x
// (R, Cin) accumulate. w is only read: the frozen weight gets no gradient.
func LoRABackward(dx, da, db, du, dy, x, u, w, a, b []float64, N, Cin, Cout, R int, scale float64) {
	for n := 0; n < N; n++ {
		dyr := dy[n*Cout : (n+1)*Cout]
		for r := 0; r < R; r++ {
			s := 0.0
			for o := 0; o < Cout; o++ {
				s += dyr[o] * b[o*R+r]
			}
			du[n*R+r] = scale * s
		}
		for o := 0; o < Cout; o++ {
			for r := 0; r < R; r++ {
				db[o*R+r] += scale * dyr[o] * u[n*R+r]
			}
		}
		for r := 0; r < R; r++ {
			for i := 0; i < Cin; i++ {
				da[r*Cin+i] += du[n*R+r] * x[n*Cin+i]
			}
		}
		for i := 0; i < Cin; i++ {
			s := 0.0
			for o := 0; o < Cout; o++ {
				s += dyr[o] * w[o*Cin+i]
			}
			for r := 0; r < R; r++ {
				s += du[n*R+r] * a[r*Cin+i]
			}
			dx[n*Cin+i] = s
		}
	}
}

// LoRAMerge folds the adapters into the base weight at growth:
// w += scale·B·A, with w (Cout, Cin), b (Cout, R) and a (R, Cin).
func LoRAMerge(w, a, b []float64, Cout, Cin, R int, scale float64) {
	for o := 0; o < Cout; o++ {
		for i := 0; i < Cin; i++ {
			s := 0.0
			for r := 0; r < R; r++ {
				s += b[o*R+r] * a[r*Cin+i]
			}
			w[o*Cin+i] += scale * s
		}
	}
}
