package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// planOut is the part of `step-gpu plan --json` that the tests read.
type planOut struct {
	Stages []struct {
		Added      int               `json:"added"`
		Layers     int               `json:"layers"`
		PaperBytes int64             `json:"paper_bytes"`
		PlanBytes  *uint64           `json:"plan_bytes"`
		Plan       map[string]uint64 `json:"plan"`
	} `json:"stages"`
	VanillaPaperBytes int64    `json:"vanilla_paper_bytes"`
	VanillaPlanBytes  *uint64  `json:"vanilla_plan_bytes"`
	ReductionPaper    float64  `json:"reduction_paper"`
	ReductionPlan     *float64 `json:"reduction_plan"`
}

func runPlan(t *testing.T, args ...string) planOut {
	t.Helper()
	out, errOut, code := runBin(t, nil, append([]string{"plan", "--json"}, args...)...)
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	var p planOut
	require.NoError(t, json.Unmarshal([]byte(out), &p), out)
	return p
}

func added(p planOut) []int {
	var out []int
	for _, s := range p.Stages {
		out = append(out, s.Added)
	}
	return out
}

// TestPlanAbstractVectors checks STEP.md's test vectors (P = 1, E = 0) in
// the abstract form.
func TestPlanAbstractVectors(t *testing.T) {
	for _, tc := range []struct {
		L, K      int
		want      []int
		max       int64
		reduction float64 // percent, one decimal as STEP.md prints it
	}{
		{24, 2, []int{13, 11}, 208, 45.8},
		{24, 3, []int{9, 8, 7}, 146, 62.0},
		{32, 2, []int{17, 15}, 274, 46.5},
	} {
		p := runPlan(t, "--layers", fmt.Sprint(tc.L), "--layer-params", "1", "--lora-params", "0", "--stages", fmt.Sprint(tc.K))
		require.Equal(t, tc.want, added(p))
		var worst int64
		for _, s := range p.Stages {
			worst = max(worst, s.PaperBytes)
			require.Nil(t, s.PlanBytes, "the abstract form has no full plan")
		}
		require.Equal(t, tc.max, worst)
		require.Equal(t, int64(16*tc.L), p.VanillaPaperBytes)
		require.InDelta(t, tc.reduction, 100*p.ReductionPaper, 0.05)
	}
	// A budget of 207 bytes rules out K = 2 (208) and takes K = 3.
	p := runPlan(t, "--layers", "24", "--layer-params", "1", "--budget", "207")
	require.Equal(t, []int{9, 8, 7}, added(p))
}

// TestPlan368M checks the 368M config's K = 2 and K = 3 splits with rank 64
// against the paper formula (P = 12,601,344, E = 1,246,208) and the full
// plan's internal consistency.
func TestPlan368M(t *testing.T) {
	const P, E = 12_601_344, 1_246_208
	for _, tc := range []struct {
		K    int
		want []int
	}{{2, []int{13, 11}}, {3, []int{10, 8, 6}}} {
		p := runPlan(t, "--preset", "368m", "--lora-rank", "64", "--stages", fmt.Sprint(tc.K))
		require.Equal(t, tc.want, added(p))
		require.Equal(t, int64(16*24*P), p.VanillaPaperBytes)
		prev, worst := 0, int64(0)
		var worstPlan uint64
		for _, s := range p.Stages {
			want := int64(16*s.Added*P + 2*prev*P + 16*prev*E)
			require.Equal(t, want, s.PaperBytes, "stage adding %d on %d", s.Added, prev)
			prev += s.Added
			require.Equal(t, prev, s.Layers)
			worst = max(worst, s.PaperBytes)

			require.NotNil(t, s.PlanBytes)
			var sum uint64
			for _, cat := range []string{"params", "grads", "optstate", "activations", "lora", "scratch"} {
				require.Contains(t, s.Plan, cat)
				sum += s.Plan[cat]
			}
			require.Equal(t, sum, *s.PlanBytes)
			worstPlan = max(worstPlan, *s.PlanBytes)
		}
		require.InDelta(t, 1-float64(worst)/float64(p.VanillaPaperBytes), p.ReductionPaper, 1e-12)
		require.NotNil(t, p.VanillaPlanBytes)
		require.InDelta(t, 1-float64(worstPlan)/float64(*p.VanillaPlanBytes), *p.ReductionPlan, 1e-12)
		require.Zero(t, p.Stages[0].Plan["lora"], "stage 1 has no frozen layers")
		require.Positive(t, p.Stages[1].Plan["lora"])
	}

	// The default preset is 368m, and a budget picks the smallest K whose
	// full plan fits: K = 2's largest stage is 16.49 GiB, K = 3's 15.83 GiB.
	require.Len(t, runPlan(t, "--budget", "17GiB").Stages, 2)
	require.Len(t, runPlan(t, "--budget", "16GiB").Stages, 3)

	out, errOut, code := runBin(t, nil, "plan", "--stages", "2")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "vanilla")
	require.Contains(t, out, "42.0% less")
}

func TestPlanBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--stages", "25"}, "exceeds"},
		{[]string{"--stages", "0"}, "at least 1"},
		{[]string{"--stages=-2"}, "at least 1"},
		{[]string{"--layers", "4", "--layer-params", "10", "--stages", "5"}, "stages must be in 1..L"},
		{[]string{"--layers", "4", "--layer-params=-10", "--stages", "2"}, "layer parameters must be positive"},
		{[]string{"--layers", "4", "--layer-params", "10", "--lora-params=-1", "--stages", "2"}, "must not be negative"},
		{[]string{"--layers", "0", "--layer-params", "10", "--stages", "1"}, "layers must be positive"},
		{[]string{"--layer-params", "10", "--stages", "1"}, "needs --layers"},
		{[]string{"--layers", "4", "--layer-params", "10", "--d-model", "64", "--stages", "1"}, "--d-model does not apply"},
		{[]string{"--d-model=-64", "--stages", "2"}, "--d-model must be positive"},
		{[]string{"--batch", "0", "--stages", "2"}, "--batch must be positive"},
		{[]string{"--lora-rank=-1", "--stages", "2"}, "--lora-rank must not be negative"},
		{[]string{"--lora-params", "5", "--stages", "2"}, "abstract form"},
		{[]string{"--preset", "nope", "--stages", "2"}, "unknown preset"},
		{[]string{"--stages", "2", "--budget", "8GiB"}, "exactly one"},
		{[]string{}, "exactly one"},
		{[]string{"--budget", "8 parsecs"}, "not a byte count"},
		{[]string{"--budget=-1GiB"}, "outside"},
		{[]string{"--budget", "1MiB"}, "no stage count fits"},
		{[]string{"--layers", "24", "--layer-params", "1", "--budget", "55"}, "no stage count fits"},
	} {
		_, errOut, code := runBin(t, nil, append([]string{"plan"}, tc.args...)...)
		require.NotEqualf(t, 0, code, "args %v", tc.args)
		require.Containsf(t, errOut, tc.msg, "args %v", tc.args)
		require.NotContains(t, strings.ToLower(errOut), "panic")
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"4096": 4096, "8GiB": 8 << 30, "8 gib": 8 << 30, "8G": 8 << 30, "1.5GB": 1_500_000_000,
		"128MiB": 128 << 20, "2k": 2048, "3KB": 3000, "7b": 7, "1TiB": 1 << 40,
	} {
		got, err := parseByteSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "GiB", "0", "-5", "0.5", "NaN", "inf", "1e30", "8 GiBs", "12 parsecs"} {
		_, err := parseByteSize(in)
		require.Error(t, err, in)
	}
}
