package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var binary string

// TestMain builds the real step-gpu binary once; the tests run it as a user
// would, so exit codes and messages are checked end to end.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "step-gpu-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "step-gpu")
	out, err := exec.Command("go", "build", "-o", binary, "./step-gpu").CombinedOutput()
	if err != nil {
		panic("build step-gpu: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runBin(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return o.String(), e.String(), 0
}

func TestDevicesJSON(t *testing.T) {
	out, errOut, code := runBin(t, nil, "devices", "--json")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.NotEmpty(t, list)
	chosen := 0
	for _, a := range list {
		for _, k := range []string{"name", "backend", "type", "chosen"} {
			require.Containsf(t, a, k, "adapter object lacks %q", k)
		}
		if a["chosen"] == true {
			chosen++
		}
	}
	require.Equal(t, 1, chosen, "exactly one adapter is chosen")
}

// TestDevicesCheck runs the device check on the test adapter, as text and
// as JSON: every kernel compiles and every checked result is within
// tolerance of the float64 reference.
func TestDevicesCheck(t *testing.T) {
	out, errOut, code := runBin(t, nil, "devices", "--check")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "pipelines created: ")
	require.Contains(t, out, "matmul: ")
	require.Contains(t, out, "attention dv")
	require.NotContains(t, out, "WRONG")
	require.Contains(t, out, "ok: step-gpu can train on this adapter")

	out, errOut, code = runBin(t, nil, "devices", "--check", "--json")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	var v struct {
		Adapters []map[string]any `json:"adapters"`
		Check    struct {
			Pipelines int  `json:"pipelines"`
			OK        bool `json:"ok"`
			Results   []struct {
				Name string `json:"name"`
				OK   bool   `json:"ok"`
			} `json:"results"`
		} `json:"check"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.NotEmpty(t, v.Adapters)
	require.True(t, v.Check.OK)
	require.Greater(t, v.Check.Pipelines, 40)
	require.Len(t, v.Check.Results, 14, "three matmul layouts at two shapes, attention out, dq, dk, dv at two")
	for _, r := range v.Check.Results {
		require.True(t, r.OK, r.Name)
	}
}

func TestNoAdapterSaysHowToGetOne(t *testing.T) {
	for _, args := range [][]string{{"devices"}, {"bench", "--op", "residual"}} {
		_, errOut, code := runBin(t, []string{"VK_ICD_FILENAMES=/nonexistent/icd.json", "VK_DRIVER_FILES=/nonexistent/icd.json"}, args...)
		require.NotEqual(t, 0, code)
		require.Contains(t, errOut, "mesa-vulkan-drivers", "the message says how to get an adapter")
	}
}

func TestBadAdapterOverride(t *testing.T) {
	_, errOut, code := runBin(t, []string{"STEP_GPU_ADAPTER=no-such-gpu"}, "devices")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "no-such-gpu")
}

func TestBenchJSON(t *testing.T) {
	out, errOut, code := runBin(t, nil, "bench", "--preset", "tiny", "--op", "residual", "--reps", "1", "--json")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		for _, k := range []string{"op", "shape", "ms"} {
			require.Contains(t, m, k)
		}
		require.Greater(t, m["ms"].(float64), 0.0)
		_, hasFlops := m["gflops"]
		_, hasBW := m["gbps"]
		require.True(t, hasFlops || hasBW, "each measurement has gflops or gbps")
		n++
	}
	require.Positive(t, n)
}

// TestMatmulFlag pins the matmul kernels from the command line or the
// environment, says which ran, and refuses an unknown name.
func TestMatmulFlag(t *testing.T) {
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--matmul", "simple"}, "matmul: simple path (set)"},
		{[]string{"STEP_GPU_MATMUL=texture"}, nil, "matmul: texture path (set)"},
		{[]string{"STEP_GPU_MATMUL=storage-texture"}, nil, "matmul: storage-texture path (set)"},
		{nil, []string{"--matmul", "auto"}, "path (probe 512^3 NT: "},
	} {
		args := append(c.args, "bench", "--m", "64", "--n", "64", "--k", "64", "--op", "matmul", "--reps", "1")
		out, errOut, code := runBin(t, c.env, args...)
		require.Equalf(t, 0, code, "stderr: %s", errOut)
		require.Contains(t, out, "matmul_NT")
		require.Contains(t, errOut, c.want)
	}
	_, errOut, code := runBin(t, nil, "--matmul", "fastest", "devices")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--matmul")
	_, errOut, code = runBin(t, []string{"STEP_GPU_MATMUL=fastest"}, "devices")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "fastest")
}

func TestUnknownPreset(t *testing.T) {
	_, errOut, code := runBin(t, nil, "bench", "--preset", "nope")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "unknown preset")
}

// TestHelpStops checks that --help prints usage and exits 0 without running
// the command (which would fail here for want of required flags).
func TestHelpStops(t *testing.T) {
	for _, cmd := range []string{"train", "eval", "plan", "bench"} {
		out, errOut, code := runBin(t, nil, cmd, "--help")
		require.Equalf(t, 0, code, "%s --help: %s", cmd, errOut)
		require.Contains(t, out, "Usage: step-gpu "+cmd)
	}
}

// TestDeviceCheckVerdict checks that a result outside tolerance fails the
// check with a message, and that an error is reported as the failure.
func TestDeviceCheckVerdict(t *testing.T) {
	c := &deviceCheck{OK: true}
	c.add("good", []float32{1, 2}, []float64{1, 2.00001})
	require.True(t, c.Results[0].OK)
	c.add("bad", []float32{1, 2}, []float64{1, 2.01})
	require.False(t, c.Results[1].OK)
	c.OK = false
	require.ErrorContains(t, c.failure(), "outside tolerance of the float64 reference: bad")
	c.Error = "compile kernels: boom"
	require.ErrorContains(t, c.failure(), "boom")
	var none *deviceCheck
	require.NoError(t, none.failure())
}
