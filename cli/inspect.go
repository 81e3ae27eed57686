package cli

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/step-gpu/step-gpu/checkpoints"
)

// InspectCmd is `step-gpu inspect`.
type InspectCmd struct {
	Path string `arg:"" help:"Checkpoint file." type:"existingfile"`
	JSON bool   `help:"Print one JSON object."`
	All  bool   `help:"List every tensor (default: the first 40)."`
}

// inspectReport is what inspect prints.
type inspectReport struct {
	Path    string                    `json:"path"`
	Version uint32                    `json:"format_version"`
	Step    int                       `json:"step"`
	Stage   int                       `json:"stage"`
	Stages  int                       `json:"stages"`
	Tokens  int64                     `json:"tokens"`
	Config  map[string]any            `json:"config"`
	Growth  []checkpoints.Growth      `json:"growth"`
	Meta    map[string]string         `json:"meta"`
	Groups  map[string]groupTotal     `json:"groups"`
	Tensors []checkpoints.TensorEntry `json:"tensors"`
}

type groupTotal struct {
	Tensors int    `json:"tensors"`
	Bytes   uint64 `json:"bytes"`
	Numel   uint64 `json:"numel"`
}

// Run verifies the checkpoint (every checksum) and prints its header, growth
// history and tensor table with totals by group.
func (c *InspectCmd) Run(e *Env) error {
	r, err := checkpoints.Open(c.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		return err
	}
	h := r.Header
	rep := inspectReport{Path: c.Path, Version: checkpoints.Version, Step: h.Step, Stage: h.Stage, Stages: h.Stages,
		Tokens: h.Tokens, Growth: h.Growth, Meta: h.Meta, Groups: map[string]groupTotal{}, Tensors: h.Tensors}
	if err := msgpack.Unmarshal(h.Config, &rep.Config); err != nil {
		return fmt.Errorf("checkpoint %s: config: %w", c.Path, err)
	}
	for _, t := range h.Tensors {
		n, _ := t.Numel()
		g := rep.Groups[string(t.Group)]
		g.Tensors++
		g.Bytes += t.Length
		g.Numel += n
		rep.Groups[string(t.Group)] = g
	}
	if c.JSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(e.Stdout, "%s: format v%d, step %d, stage %d/%d, %d tokens, all %d checksums ok\n",
		c.Path, rep.Version, h.Step, h.Stage, h.Stages, h.Tokens, len(h.Tensors))
	keys := make([]string, 0, len(rep.Config))
	for k := range rep.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(e.Stdout, "config:")
	for _, k := range keys {
		fmt.Fprintf(e.Stdout, " %s=%v", k, rep.Config[k])
	}
	fmt.Fprintln(e.Stdout)
	if len(h.Growth) == 0 {
		fmt.Fprintln(e.Stdout, "growth: none (a single-stage run)")
	}
	for _, g := range h.Growth {
		fmt.Fprintf(e.Stdout, "growth: stage %d at step %d: %s/%s, +%d layers\n", g.Stage, g.Step, g.Operator, g.Position, g.Added)
	}
	metaKeys := make([]string, 0, len(h.Meta))
	for k := range h.Meta {
		metaKeys = append(metaKeys, k)
	}
	sort.Strings(metaKeys)
	for _, k := range metaKeys {
		fmt.Fprintf(e.Stdout, "meta: %s = %s\n", k, h.Meta[k])
	}
	groups := make([]string, 0, len(rep.Groups))
	for g := range rep.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		t := rep.Groups[g]
		fmt.Fprintf(e.Stdout, "group %-10s %4d tensors %12d elements %10.2f MiB\n", g, t.Tensors, t.Numel, float64(t.Bytes)/(1<<20))
	}
	fmt.Fprintf(e.Stdout, "%-40s %-5s %-16s %-10s %12s %s\n", "tensor", "dtype", "shape", "group", "bytes", "crc32c")
	for i, t := range h.Tensors {
		if i == 40 && !c.All {
			fmt.Fprintf(e.Stdout, "... %d more (--all lists them)\n", len(h.Tensors)-40)
			break
		}
		fmt.Fprintf(e.Stdout, "%-40s %-5s %-16s %-10s %12d %08x\n", t.Name, t.DType, fmt.Sprint(t.Shape), t.Group, t.Length, t.CRC32C)
	}
	return nil
}
