package ref

// EmbeddingForward returns out (N, C) with out[n, :] = wte[tokens[n], :] for
// tokens (N) and wte (V, C). A token outside the vocabulary (>= V) gives a
// row of zeros, as the GPU kernel's guard does.
func EmbeddingForward(tokens []uint32, wte []float64, N, C, V int) []float64 {
	out := make([]float64, N*C)
	for n := 0; n < N; n++ {
		v := int(tokens[n])
		if v >= V {
			continue
		}
		copy(out[n*C:(n+1)*C], wte[v*C:(v+1)*C])
	}
	return out
}

// EmbeddingBackward accumulates the gradient of the embedding into dwte
// (V, C): dwte[tokens[n], :] += dout[n, :] for every row n of dout (N, C),
// in increasing n. Tokens outside the vocabulary contribute nothing.
func EmbeddingBackward(dwte, dout []float64, tokens []uint32, N, C, V int) {
	for n := 0; n < N; n++ {
		v := int(tokens[n])
		if v >= V {
			continue
		}
		for c := 0; c < C; c++ {
			dwte[v*C+c] += dout[n*C+c]
		}
	}
}
