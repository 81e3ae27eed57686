package ref

import "math"

// RoPEAngle returns the rotation angle of pair i (0 <= i < HS/2) at time
// index pos: pos * theta^(-2i/HS).
func RoPEAngle(pos, i, HS int, theta float64) float64 {
	return float64(pos) * math.Pow(theta, -2*float64(i)/float64(HS))
}

// RoPEForward applies rotary position embeddings to x (B, T, NH*HS) in the
// rotate-half convention of Hugging Face LLaMA: within each head, element i
// is paired with element i+HS/2 (i < HS/2) and the pair is rotated by
// RoPEAngle(t, i, HS, theta), t being the row's time index:
//
//	x1' = x1*cos - x2*sin
//	x2' = x2*cos + x1*sin
func RoPEForward(x []float64, B, T, NH, HS int, theta float64) []float64 {
	return ropeRotate(x, B, T, NH, HS, theta, 1)
}

// RoPEBackward returns dx (B, T, NH*HS) given dout: the inverse (transposed)
// rotation, that is the rotation by the negated angle.
func RoPEBackward(dout []float64, B, T, NH, HS int, theta float64) []float64 {
	return ropeRotate(dout, B, T, NH, HS, theta, -1)
}

func ropeRotate(x []float64, B, T, NH, HS int, theta, sign float64) []float64 {
	out := make([]float64, len(x))
	half := HS / 2
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			for h := 0; h < NH; h++ {
				base := ((b*T+t)*NH + h) * HS
				for i := 0; i < half; i++ {
					sin, cos := math.Sincos(RoPEAngle(t, i, HS, theta))
					sin *= sign
					x1, x2 := x[base+i], x[base+i+half]
					out[base+i] = x1*cos - x2*sin
					out[base+i+half] = x2*cos + x1*sin
				}
			}
		}
	}
	return out
}
