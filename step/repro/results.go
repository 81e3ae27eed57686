package repro

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// StateCategories are the ledger categories of model states, the part of
// memory the paper's formula counts: weights, gradients, AdamW moments and
// adapters (with their gradients and moments).
var StateCategories = []gpu.Category{gpu.CatParams, gpu.CatGrads, gpu.CatOptState, gpu.CatLoRA}

// Reductions are the fractions of vanilla's memory that a method saves,
// 1 - method/vanilla, for each memory column (negative: it needs more).
type Reductions struct {
	Paper    float64 `json:"paper"`
	Plan     float64 `json:"plan"`
	Measured float64 `json:"measured"`
	States   float64 `json:"model_states"`
}

// Result is one method's outcome.
type Result struct {
	Method
	RunDir string `json:"run_dir"`
	// Split is the layers each stage adds (nil for vanilla).
	Split  []int `json:"split,omitempty"`
	Steps  int   `json:"steps"`
	Tokens int64 `json:"tokens"`
	// ValLoss is the final validation loss over the run's fixed
	// validation batches, ValPPL its exponential.
	ValLoss float64 `json:"val_loss"`
	ValPPL  float64 `json:"val_ppl"`
	// The maxima over the stages of StageMemory's Paper, Plan and Model
	// (the ledger's model buffers), and of the ledger's model states
	// (StateCategories), in bytes.
	PaperMax    int64      `json:"paper_max_bytes"`
	PlanMax     uint64     `json:"plan_max_bytes"`
	MeasuredMax uint64     `json:"measured_max_bytes"`
	StatesMax   uint64     `json:"model_states_max_bytes"`
	Reduction   Reductions `json:"reduction_vs_vanilla"`
	// WallSeconds is the training loop's time (evaluations and checkpoints
	// included), TokPerS the trained tokens per wall second.
	WallSeconds float64 `json:"wall_seconds"`
	TokPerS     float64 `json:"tok_per_s"`
	// Growth holds the tokens seen at each growth.
	Growth []int64            `json:"growth_tokens,omitempty"`
	Memory []step.StageMemory `json:"memory"`
	Curve  []Point            `json:"curve"`
}

// States returns the ledger's model-state bytes of one stage report.
func States(s step.StageMemory) uint64 {
	var n uint64
	for _, c := range StateCategories {
		n += s.Measured[c.String()]
	}
	return n
}

// maxima fills the memory maxima from the stage reports.
func (r *Result) maxima() {
	r.PaperMax, r.PlanMax, r.MeasuredMax, r.StatesMax = 0, 0, 0, 0
	for _, s := range r.Memory {
		r.PaperMax = max(r.PaperMax, s.Paper)
		r.PlanMax = max(r.PlanMax, s.Plan)
		r.MeasuredMax = max(r.MeasuredMax, s.Model)
		r.StatesMax = max(r.StatesMax, States(s))
	}
}

// Results is a whole reproduction.
type Results struct {
	// Model is the final model of every method (V is the tokenizer's).
	Model       nn.Config `json:"model"`
	Device      string    `json:"device"`
	Data        string    `json:"data"`
	Steps       int       `json:"steps"`
	TotalBatch  int       `json:"total_batch"`
	EvalBatches int       `json:"eval_batches"`
	Seed        uint64    `json:"seed"`
	Methods     []Result  `json:"methods"`
	// FrozenF32Delta is the final validation loss of the frozen-f32
	// ablation minus that of the STEP run it varies (half-precision frozen
	// weights), when both ran.
	FrozenF32Delta *float64 `json:"frozen_f32_val_loss_delta,omitempty"`
}

// Find returns the result of the named method, or nil.
func (rs *Results) Find(name string) *Result {
	for i := range rs.Methods {
		if rs.Methods[i].Name == name {
			return &rs.Methods[i]
		}
	}
	return nil
}

// reduction returns 1 - x/vanilla (0 without a vanilla figure).
func reduction(x, vanilla float64) float64 {
	if vanilla <= 0 {
		return 0
	}
	return 1 - x/vanilla
}

// summarise computes every method's reductions against vanilla and the
// frozen-f32 validation loss difference.
func (rs *Results) summarise() {
	v := rs.Find(Vanilla.Name)
	if v == nil {
		return
	}
	for i := range rs.Methods {
		r := &rs.Methods[i]
		r.maxima()
		r.Reduction = Reductions{
			Paper:    reduction(float64(r.PaperMax), float64(v.PaperMax)),
			Plan:     reduction(float64(r.PlanMax), float64(v.PlanMax)),
			Measured: reduction(float64(r.MeasuredMax), float64(v.MeasuredMax)),
			States:   reduction(float64(r.StatesMax), float64(v.StatesMax)),
		}
	}
	rs.FrozenF32Delta = nil
	for _, r := range rs.Methods {
		if r.Ablation != "frozen-f32" {
			continue
		}
		if half := rs.Find(STEP(r.Stages).Name); half != nil {
			d := r.ValLoss - half.ValLoss
			rs.FrozenF32Delta = &d
		}
	}
}

// mib formats bytes as MiB.
func mib(n uint64) string { return fmt.Sprintf("%.2f MiB", gpu.MiB(n)) }

// memCell formats a memory figure with its change against vanilla.
func memCell(n uint64, red float64, vanilla bool) string {
	if vanilla {
		return mib(n)
	}
	return fmt.Sprintf("%s (%+.1f%%)", mib(n), -100*red)
}

// splitText writes a split like 3+3+2 ("-" for vanilla).
func splitText(split []int) string {
	if len(split) == 0 {
		return "-"
	}
	parts := make([]string, len(split))
	for i, n := range split {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, "+")
}

// seconds formats a wall time, with a decimal below ten seconds.
func seconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

// tableHeader are the columns of the results table.
var tableHeader = []string{"method", "split", "val loss", "val ppl", "paper max", "plan max", "measured max",
	"model states max", "wall", "tok/s"}

// rows returns the table's cells, one row per method.
func (rs *Results) rows() [][]string {
	var out [][]string
	for _, r := range rs.Methods {
		v := r.Name == Vanilla.Name
		out = append(out, []string{r.Label, splitText(r.Split), fmt.Sprintf("%.4f", r.ValLoss), fmt.Sprintf("%.2f", r.ValPPL),
			memCell(uint64(r.PaperMax), r.Reduction.Paper, v), memCell(r.PlanMax, r.Reduction.Plan, v),
			memCell(r.MeasuredMax, r.Reduction.Measured, v), memCell(r.StatesMax, r.Reduction.States, v),
			seconds(r.WallSeconds), fmt.Sprintf("%.0f", r.TokPerS)})
	}
	return out
}

// setup says in one line what every method trained.
func (rs *Results) setup() string {
	m := rs.Model
	return fmt.Sprintf("model C %d, L %d, NH %d, H %d, V %d, T %d, batch %d; %d steps of %d tokens (%d tokens) per method, seed %d; validation over %d fixed batches; device %s",
		m.C, m.L, m.NH, m.H, m.V, m.T, m.B, rs.Steps, rs.TotalBatch, int64(rs.Steps)*int64(rs.TotalBatch), rs.Seed,
		rs.EvalBatches, rs.Device)
}

// PrintTable writes the results as an aligned text table; memory columns
// show each method's change against vanilla in parentheses.
func (rs *Results) PrintTable(w io.Writer) {
	fmt.Fprintln(w, rs.setup())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t")+"\t")
	for _, row := range rs.rows() {
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	if d := rs.FrozenF32Delta; d != nil {
		fmt.Fprintf(w, "frozen weights in f32 instead of half: validation loss %+.4f\n", *d)
	}
}

// Markdown returns results.md: the setup, the table, each stage's memory
// and the plots.
func (rs *Results) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# STEP reproduction results\n\n%s.\n\n", rs.setup())
	fmt.Fprintf(&b, "Data: %s.\n\n", rs.Data)
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(tableHeader, " | "), strings.Repeat("---|", len(tableHeader)))
	for _, row := range rs.rows() {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	b.WriteString("\nMemory columns are the maximum over the stages; the change against vanilla is in parentheses. ")
	b.WriteString("See docs/REPRO.md for what each column means.\n")
	if d := rs.FrozenF32Delta; d != nil {
		fmt.Fprintf(&b, "\nFrozen weights in f32 instead of half precision change the final validation loss by %+.4f.\n", *d)
	}
	b.WriteString("\n## Memory per stage\n\n")
	b.WriteString("| method | stage | layers | frozen | paper | plan | measured | model states | kernel caches |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs.Methods {
		for _, s := range r.Memory {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %s | %s | %s |\n", r.Label, s.Stage, s.Layers, s.Frozen,
				mib(uint64(s.Paper)), mib(s.Plan), mib(s.Model), mib(States(s)), mib(s.Cache))
		}
	}
	fmt.Fprintf(&b, "\n## Plots\n\n![validation loss](%s)\n\n![memory per stage](%s)\n", LossPlot, MemoryPlot)
	return b.String()
}

// Write writes results.json, results.md and the plots into dir.
func (rs *Results) Write(dir string) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(rs.Markdown()), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := rs.PlotLoss(filepath.Join(dir, LossPlot)); err != nil {
		return err
	}
	return rs.PlotMemory(filepath.Join(dir, MemoryPlot))
}

// ReadResults reads the results.json that Write wrote into dir.
func ReadResults(dir string) (*Results, error) {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	var rs Results
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("results: %s: %w", filepath.Join(dir, "results.json"), err)
	}
	rs.summarise()
	return &rs, nil
}
