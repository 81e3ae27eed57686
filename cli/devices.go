package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
)

// DevicesCmd lists adapters.
type DevicesCmd struct {
	JSON bool `help:"Print a JSON list of adapter objects."`
}

// Run prints every adapter with its key limits and features, marking the
// one step-gpu would choose.
func (c *DevicesCmd) Run(e *Env) error {
	infos, err := gpu.ListAdapters(e.Adapter)
	if err != nil && infos == nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if infos == nil {
			infos = []gpu.AdapterInfo{}
		}
		if encErr := enc.Encode(infos); encErr != nil {
			return encErr
		}
		return err
	}
	for _, a := range infos {
		mark := " "
		if a.Chosen {
			mark = "*"
		}
		fmt.Fprintf(e.Stdout, "%s [%d] %s\n", mark, a.Index, a.Name)
		fmt.Fprintf(e.Stdout, "      backend %s, type %s, vendor:device %s", a.Backend, a.Type, a.DeviceID)
		if a.Driver != "" {
			fmt.Fprintf(e.Stdout, ", driver %q", a.Driver)
		}
		fmt.Fprintln(e.Stdout)
		l := a.Limits
		fmt.Fprintf(e.Stdout, "      max buffer %s, storage binding %s, workgroup memory %d KiB, invocations %d, storage buffers/stage %d, workgroups/dim %d, texture 2D %d\n",
			size(l.MaxBufferSize), size(l.MaxStorageBufferBindingSize), l.MaxComputeWorkgroupStorageSize/1024,
			l.MaxComputeInvocationsPerWorkgroup, l.MaxStorageBuffersPerShaderStage, l.MaxComputeWorkgroupsPerDimension, l.MaxTextureDimension2D)
		if len(a.Features) > 0 {
			fmt.Fprintf(e.Stdout, "      features: %s\n", strings.Join(a.Features, ", "))
		}
		if lerr := gpu.CheckLimits(a.Limits); lerr != nil {
			fmt.Fprintf(e.Stdout, "      unusable: %v\n", lerr)
		}
	}
	if err == nil {
		fmt.Fprintln(e.Stdout, "* = the adapter step-gpu uses (override with --adapter or STEP_GPU_ADAPTER)")
	}
	return err
}

func size(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
