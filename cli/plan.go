package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// PlanCmd is `step-gpu plan`: STEP's memory planner. Pointer flags tell an
// explicit value (0 included, which is rejected) from an absent one.
type PlanCmd struct {
	Preset       *string `help:"Model preset (${presets}; default 368m)." placeholder:"NAME"`
	DModel       *int    `name:"d-model" help:"Model width C (overrides the preset's)."`
	Layers       *int    `help:"Transformer blocks L (overrides the preset's; required with --layer-params)."`
	Heads        *int    `help:"Attention heads NH."`
	DFF          *int    `name:"d-ff" help:"SwiGLU hidden width H."`
	Vocab        *int    `help:"Vocabulary size V."`
	SeqLen       *int    `name:"seq-len" help:"Sequence length T."`
	Batch        *int    `help:"Micro-batch size B (sequences)."`
	Stages       *int    `help:"Number of stages K (1 = vanilla)." placeholder:"K"`
	Budget       string  `help:"Pick the smallest K in 2..L whose largest stage fits this many bytes (suffixes KiB, MiB, GiB, TiB or K, M, G, T: powers of 1024; KB, MB, GB, TB: powers of 1000): the full plan's bytes for a model, the paper's in the abstract form." placeholder:"BYTES"`
	LoRARank     *int    `name:"lora-rank" help:"LoRA rank R of the adapters on frozen layers (default 64)." placeholder:"R"`
	LayerParams  *int64  `name:"layer-params" help:"Abstract form: parameters P of one layer (the paper's formula only; needs --layers)." placeholder:"P"`
	LoRAParams   *int64  `name:"lora-params" help:"Abstract form: LoRA parameters E attached to one frozen layer (default 0)." placeholder:"E"`
	BindingLimit string  `name:"binding-limit" help:"Largest storage binding of the device, which sets the logits chunk (default 128MiB)." placeholder:"BYTES"`
	FrozenF32    bool    `name:"frozen-f32" help:"Plan frozen weights in float32 instead of packed half precision."`
	Recompute    bool    `help:"Plan block recomputation (train --recompute): one saved input per block and one shared set of activations."`
	JSON         bool    `name:"json" help:"Print JSON instead of a table."`
}

// planStageJSON is one stage of the JSON output; the plan fields are absent
// in the abstract form.
type planStageJSON struct {
	Stage      int             `json:"stage"`
	Added      int             `json:"added"`
	Layers     int             `json:"layers"`
	PaperBytes int64           `json:"paper_bytes"`
	PlanBytes  *uint64         `json:"plan_bytes,omitempty"`
	Plan       *step.Footprint `json:"plan,omitempty"`
}

// planJSON is the output of `step-gpu plan --json`.
type planJSON struct {
	Model             *nn.Config      `json:"model,omitempty"`
	LoRARank          *int            `json:"lora_rank,omitempty"`
	LayerParams       int64           `json:"layer_params"`
	LoRAParams        int64           `json:"lora_params"`
	Stages            []planStageJSON `json:"stages"`
	MaxPaperBytes     int64           `json:"max_paper_bytes"`
	VanillaPaperBytes int64           `json:"vanilla_paper_bytes"`
	ReductionPaper    float64         `json:"reduction_paper"`
	MaxPlanBytes      *uint64         `json:"max_plan_bytes,omitempty"`
	VanillaPlanBytes  *uint64         `json:"vanilla_plan_bytes,omitempty"`
	VanillaPlan       *step.Footprint `json:"vanilla_plan,omitempty"`
	ReductionPlan     *float64        `json:"reduction_plan,omitempty"`
}

// Run prints the plan.
func (c *PlanCmd) Run(e *Env) error {
	if (c.Stages == nil) == (c.Budget == "") {
		return errors.New("plan: give exactly one of --stages K and --budget BYTES")
	}
	if c.Stages != nil && *c.Stages < 1 {
		return fmt.Errorf("plan: --stages must be at least 1, got %d", *c.Stages)
	}
	var budget uint64
	if c.Budget != "" {
		var err error
		if budget, err = parseByteSize(c.Budget); err != nil {
			return fmt.Errorf("plan: --budget: %w", err)
		}
	}
	var out planJSON
	var err error
	if c.LayerParams != nil {
		out, err = c.abstract(budget)
	} else {
		out, err = c.full(budget)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printPlan(e.Stdout, out)
	return nil
}

// abstract plans with the paper's formula alone, from L, P and E.
func (c *PlanCmd) abstract(budget uint64) (planJSON, error) {
	for _, f := range []struct {
		name string
		set  bool
	}{{"--preset", c.Preset != nil}, {"--d-model", c.DModel != nil}, {"--heads", c.Heads != nil}, {"--d-ff", c.DFF != nil},
		{"--vocab", c.Vocab != nil}, {"--seq-len", c.SeqLen != nil}, {"--batch", c.Batch != nil}, {"--lora-rank", c.LoRARank != nil},
		{"--binding-limit", c.BindingLimit != ""}, {"--frozen-f32", c.FrozenF32}} {
		if f.set {
			return planJSON{}, fmt.Errorf("plan: %s does not apply to the abstract form (--layer-params)", f.name)
		}
	}
	if c.Layers == nil {
		return planJSON{}, errors.New("plan: the abstract form (--layer-params) needs --layers")
	}
	m := step.PaperModel{L: *c.Layers, P: *c.LayerParams}
	if c.LoRAParams != nil {
		m.E = *c.LoRAParams
	}
	if err := m.Validate(); err != nil {
		return planJSON{}, fmt.Errorf("plan: %w", err)
	}
	var s step.Split
	var err error
	if c.Stages != nil {
		s, err = m.Split(*c.Stages)
	} else {
		s, err = m.SplitWithin(int64(min(budget, math.MaxInt64)))
	}
	if err != nil {
		return planJSON{}, fmt.Errorf("plan: %w", err)
	}
	out := planJSON{LayerParams: m.P, LoRAParams: m.E, MaxPaperBytes: s.Max, VanillaPaperBytes: m.Vanilla(),
		ReductionPaper: s.Reduction(m.Vanilla())}
	layers := 0
	for i, n := range s.Added {
		layers += n
		out.Stages = append(out.Stages, planStageJSON{Stage: i + 1, Added: n, Layers: layers, PaperBytes: s.Bytes[i]})
	}
	return out, nil
}

// full plans a model config: the paper's formula and every buffer.
func (c *PlanCmd) full(budget uint64) (planJSON, error) {
	if c.LoRAParams != nil {
		return planJSON{}, errors.New("plan: --lora-params needs the abstract form (--layer-params); give --lora-rank for a model")
	}
	name := "368m"
	if c.Preset != nil {
		name = *c.Preset
	}
	cfg, err := nn.Preset(name)
	if err != nil {
		return planJSON{}, fmt.Errorf("plan: %w", err)
	}
	for _, f := range []struct {
		flag string
		v    *int
		dst  *int
	}{{"--d-model", c.DModel, &cfg.C}, {"--layers", c.Layers, &cfg.L}, {"--heads", c.Heads, &cfg.NH}, {"--d-ff", c.DFF, &cfg.H},
		{"--vocab", c.Vocab, &cfg.V}, {"--seq-len", c.SeqLen, &cfg.T}, {"--batch", c.Batch, &cfg.B}} {
		if f.v == nil {
			continue
		}
		if *f.v < 1 {
			return planJSON{}, fmt.Errorf("plan: %s must be positive, got %d", f.flag, *f.v)
		}
		*f.dst = *f.v
	}
	if err := cfg.Validate(); err != nil {
		return planJSON{}, fmt.Errorf("plan: %w", err)
	}
	o := step.PlanOptions{R: 64, FrozenF32: c.FrozenF32, Recompute: c.Recompute}
	if c.LoRARank != nil {
		if *c.LoRARank < 0 {
			return planJSON{}, fmt.Errorf("plan: --lora-rank must not be negative, got %d", *c.LoRARank)
		}
		o.R = *c.LoRARank
	}
	if c.BindingLimit != "" {
		if o.BindingLimit, err = parseByteSize(c.BindingLimit); err != nil {
			return planJSON{}, fmt.Errorf("plan: --binding-limit: %w", err)
		}
	}
	pm := step.PaperModelOf(cfg, o.R)
	var p step.Plan
	if c.Stages != nil {
		if *c.Stages > cfg.L {
			return planJSON{}, fmt.Errorf("plan: --stages %d exceeds the model's %d layers", *c.Stages, cfg.L)
		}
		s, err := pm.Split(*c.Stages)
		if err != nil {
			return planJSON{}, fmt.Errorf("plan: %w", err)
		}
		p, err = step.PlanSplit(cfg, s.Added, o)
		if err != nil {
			return planJSON{}, fmt.Errorf("plan: %w", err)
		}
	} else if p, err = step.PlanWithin(cfg, budget, o); err != nil {
		return planJSON{}, fmt.Errorf("plan: %w", err)
	}
	out := planJSON{Model: &cfg, LoRARank: &o.R, LayerParams: pm.P, LoRAParams: pm.E,
		VanillaPaperBytes: p.VanillaPaperBytes, ReductionPaper: p.ReductionPaper,
		VanillaPlanBytes: &p.VanillaPlanBytes, VanillaPlan: &p.VanillaPlan, ReductionPlan: &p.ReductionPlan}
	var maxPlan uint64
	for i, s := range p.Stages {
		out.Stages = append(out.Stages, planStageJSON{Stage: i + 1, Added: s.Added, Layers: s.Layers,
			PaperBytes: s.PaperBytes, PlanBytes: &s.PlanBytes, Plan: &s.Plan})
		out.MaxPaperBytes = max(out.MaxPaperBytes, s.PaperBytes)
		maxPlan = max(maxPlan, s.PlanBytes)
	}
	out.MaxPlanBytes = &maxPlan
	return out, nil
}

// printPlan writes the plan as a table, one row per stage and one for
// vanilla pre-training of the final model.
func printPlan(w io.Writer, p planJSON) {
	if m := p.Model; m != nil {
		fmt.Fprintf(w, "model: C %d, L %d, NH %d, H %d, V %d, B %d, T %d; LoRA rank %d\n", m.C, m.L, m.NH, m.H, m.V, m.B, m.T, *p.LoRARank)
		fmt.Fprintf(w, "P = %d parameters per layer (with its two RMSNorm gains), E = %d LoRA parameters per frozen layer\n\n",
			p.LayerParams, p.LoRAParams)
	} else {
		fmt.Fprintf(w, "P = %d parameters per layer, E = %d LoRA parameters per frozen layer (paper formula only)\n\n",
			p.LayerParams, p.LoRAParams)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "stage\tadded\tlayers\tpaper\t"
	if p.Model != nil {
		head += "params\tgrads\toptstate\tactivations\tlora\tscratch\tplan\t"
	}
	fmt.Fprintln(tw, head)
	row := func(stage, added string, layers int, paper int64, f *step.Footprint) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t", stage, added, layers, planSize(uint64(paper)))
		if f != nil {
			for _, v := range []uint64{f.Params, f.Grads, f.OptState, f.Activations, f.LoRA, f.Scratch, f.Total()} {
				fmt.Fprintf(tw, "%s\t", planSize(v))
			}
		}
		fmt.Fprintln(tw)
	}
	L := 0
	for _, s := range p.Stages {
		row(strconv.Itoa(s.Stage), strconv.Itoa(s.Added), s.Layers, s.PaperBytes, s.Plan)
		L = s.Layers
	}
	row("vanilla", "", L, p.VanillaPaperBytes, p.VanillaPlan)
	tw.Flush()
	fmt.Fprintf(w, "\nlargest stage, paper: %s of vanilla's %s (%.1f%% less)\n",
		planSize(uint64(p.MaxPaperBytes)), planSize(uint64(p.VanillaPaperBytes)), 100*p.ReductionPaper)
	if p.MaxPlanBytes != nil {
		fmt.Fprintf(w, "largest stage, full plan: %s of vanilla's %s (%.1f%% less)\n",
			planSize(*p.MaxPlanBytes), planSize(*p.VanillaPlanBytes), 100**p.ReductionPlan)
		fmt.Fprintln(w, "scratch counts the model's own buffers; kernel-internal caches (matmul packing textures, RMSNorm partials) come on top")
	}
}

// planSize formats bytes in binary units with three significant digits.
func planSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// byteUnits are the suffixes parseByteSize accepts, longest first.
var byteUnits = []struct {
	suffix string
	scale  float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
}

// parseByteSize parses a positive byte count such as 8GiB, 1.5 GB or 4096.
func parseByteSize(s string) (uint64, error) {
	num := strings.ToLower(strings.TrimSpace(s))
	scale := 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, scale = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.scale
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 8GiB, 1.5GB, 4096)", s)
	}
	b := math.Floor(v * scale)
	if b < 1 || b >= 1<<63 {
		return 0, fmt.Errorf("%q is outside 1 byte .. 8 EiB", s)
	}
	return uint64(b), nil
}
