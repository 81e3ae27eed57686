package hf

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
)

// hfReferenceTol compares scripts/hf_reference.py's logits (numpy float64,
// rounded to float32 for tol.Check) with nn/ref's float64 forward on the
// same float32 weights. Both compute in float64, so they differ by
// summation order and libm (far below float32 resolution) plus the float32
// rounding of the script's output (relative 6e-8): the measured max abs
// error is 2.1e-7 on logits up to about 5. 1e-6 leaves margin, while a
// convention error moves logits by O(1): swapping gate and up gave a max
// error of 3.45, interleaved instead of rotate-half RoPE 6.22.
var hfReferenceTol = tol.Tol{Atol: 1e-6, Rtol: 1e-6}

// TestHFReferenceLogits exports a random model and checks that an
// independent numpy implementation of Hugging Face LLaMA's forward pass,
// reading only config.json and model.safetensors, produces step-gpu's
// logits. It is the test that the tensor names, the gate/up/down mapping and
// the rotate-half RoPE convention agree with transformers'.
func TestHFReferenceLogits(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skipf("needs %s with numpy: %v", python, err)
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "hf_reference.py")

	c := hfTestConfig
	c.RoPE = 500 // a small base so high-frequency and low-frequency pairs both rotate visibly over T
	w := hfRandomWeights(c, 4)
	dir := filepath.Join(t.TempDir(), "hf")
	require.NoError(t, Export(dir, c, w, nil))

	tokens := []uint32{3, 60, 0, 17, 17, 42, 5, 59, 1, 30, 8} // T = 11, every position attends to a different prefix
	args := []string{script, dir}
	for _, id := range tokens {
		args = append(args, strconv.Itoa(int(id)))
	}
	cmd := exec.Command(python, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "run %s", script)
	var rows [][]float64
	require.NoError(t, json.Unmarshal(out, &rows))
	require.Len(t, rows, len(tokens))
	var got []float32
	for _, r := range rows {
		require.Len(t, r, c.V)
		for _, v := range r {
			got = append(got, float32(v))
		}
	}

	p := ref.Params{}
	for name, v := range w {
		p[name] = tol.F64(v)
	}
	f := ref.ModelForward(c.Ref(), p, tokens, make([]uint32, len(tokens)), 1, len(tokens))
	tol.Check(t, "hf_reference.py logits vs nn/ref", got, f.Logits, hfReferenceTol)
}
