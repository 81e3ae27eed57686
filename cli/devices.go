package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
)

// DevicesCmd lists adapters.
type DevicesCmd struct {
	JSON  bool `help:"Print a JSON list of adapter objects (with --check: an object with adapters and check)."`
	Check bool `help:"Also open the chosen adapter and check that step-gpu works there: storage textures, every kernel's pipeline, the matmul path, and matmuls and attention against the float64 reference."`
}

// Run prints every adapter with its key limits and features, marking the
// one step-gpu would choose.
func (c *DevicesCmd) Run(e *Env) error {
	infos, err := gpu.ListAdapters(e.Adapter)
	if err != nil && infos == nil {
		return err
	}
	var check *deviceCheck
	if c.Check && err == nil {
		var cerr error
		check, cerr = checkDevice(e)
		if cerr != nil {
			check.Error = cerr.Error()
		}
	}
	if c.JSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if infos == nil {
			infos = []gpu.AdapterInfo{}
		}
		var v any = infos
		if c.Check {
			v = map[string]any{"adapters": infos, "check": check}
		}
		if encErr := enc.Encode(v); encErr != nil {
			return encErr
		}
		return errors.Join(err, check.failure())
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
	if check != nil {
		check.print(e)
	}
	return errors.Join(err, check.failure())
}

// failure returns the error a failed check exits with (nil without one).
func (c *deviceCheck) failure() error {
	switch {
	case c == nil || c.OK:
		return nil
	case c.Error != "":
		return fmt.Errorf("device check failed: %s", c.Error)
	}
	var wrong []string
	for _, r := range c.Results {
		if !r.OK {
			wrong = append(wrong, r.Name)
		}
	}
	return fmt.Errorf("device check failed: outside tolerance of the float64 reference: %s", strings.Join(wrong, ", "))
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
