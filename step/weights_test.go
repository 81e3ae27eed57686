package step

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/shaders"
)

// TestTensorF32Half decodes f16 tensors of odd and even counts as a
// checkpoint stores them (2 bytes per element, the last word cut to its
// used half) back to the exact float32 values.
func TestTensorF32Half(t *testing.T) {
	for _, n := range []int{1, 5, 6} {
		want := make([]float32, n)
		for i := range want {
			want[i] = float32(i+1) * -0.375
		}
		words := shaders.PackHalf(want)
		b := make([]byte, 4*len(words))
		for i, w := range words {
			binary.LittleEndian.PutUint32(b[4*i:], w)
		}
		got, err := tensorF32(b[:2*n], checkpoints.TensorEntry{Name: "w", DType: checkpoints.F16, Shape: []int{n}})
		require.NoError(t, err)
		require.Equal(t, want, got, "n = %d", n)
	}
}
