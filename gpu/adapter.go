package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
)

// AdapterEnv is the environment variable that overrides adapter choice, with
// the same syntax as the --adapter flag: an index into the adapter list or a
// case-insensitive substring of the adapter's name.
const AdapterEnv = "STEP_GPU_ADAPTER"

// ErrNoAdapter is returned when WebGPU finds no adapter at all.
var ErrNoAdapter = errors.New("no WebGPU adapter found: install a GPU driver with Vulkan, Metal or D3D12 support, " +
	"or the CPU adapter (on Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1)")

// AdapterInfo describes one adapter as step-gpu reports it.
type AdapterInfo struct {
	Index    int         `json:"index"`
	Name     string      `json:"name"`
	DeviceID string      `json:"device_id"`
	Vendor   string      `json:"vendor"`
	Backend  string      `json:"backend"`
	Type     string      `json:"type"`
	Driver   string      `json:"driver"`
	Limits   wgpu.Limits `json:"limits"`
	Features []string    `json:"features"`
	Chosen   bool        `json:"chosen"`

	adapterType wgpu.AdapterType
}

// typeRank orders adapter types by preference: discrete GPU first, then
// integrated, then unknown, then the CPU adapter.
func typeRank(t wgpu.AdapterType) int {
	switch t {
	case wgpu.AdapterTypeDiscreteGPU:
		return 0
	case wgpu.AdapterTypeIntegratedGPU:
		return 1
	case wgpu.AdapterTypeCPU:
		return 3
	}
	return 2
}

func describe(i int, a *wgpu.Adapter) AdapterInfo {
	info := a.GetInfo()
	lim := a.GetLimits().Limits
	// The binding reads garbage for this native limit (WEBGPU.md; device
	// creation leaves it undefined) and step-gpu uses no push constants:
	// report 0, not the garbage.
	lim.MaxPushConstantSize = 0
	var feats []string
	for _, f := range a.EnumerateFeatures() {
		feats = append(feats, f.String())
	}
	sort.Strings(feats)
	// wgpu-native v22 puts the human-readable adapter name ("llvmpipe (LLVM
	// 15.0.6, 256 bits)", "NVIDIA H100 80GB HBM3") in the description and a
	// hex device id in the name field.
	name := strings.TrimSpace(info.DriverDescription)
	if name == "" {
		name = info.Name
	}
	return AdapterInfo{
		Index:       i,
		Name:        name,
		DeviceID:    fmt.Sprintf("%#04x:%#04x", info.VendorId, info.DeviceId),
		Vendor:      info.VendorName,
		Backend:     info.BackendType.String(),
		Type:        info.AdapterType.String(),
		Driver:      strings.TrimSpace(info.Architecture),
		Limits:      lim,
		Features:    feats,
		adapterType: info.AdapterType,
	}
}

// enumerate returns every adapter the instance sees, in the order wgpu lists
// them, skipping the OpenGL backend (no compute on GLES in this wgpu).
func enumerate(inst *wgpu.Instance) ([]*wgpu.Adapter, []AdapterInfo) {
	var adapters []*wgpu.Adapter
	var infos []AdapterInfo
	for _, a := range inst.EnumerateAdapters(nil) {
		info := describe(len(infos), a)
		if info.Backend == wgpu.BackendTypeOpenGL.String() || info.Backend == wgpu.BackendTypeOpenGLES.String() {
			a.Release()
			continue
		}
		adapters = append(adapters, a)
		infos = append(infos, info)
	}
	return adapters, infos
}

// Choose picks an adapter from the list. With an empty override it prefers a
// discrete GPU, then an integrated one, then the CPU adapter (the first of
// each kind in listing order). An override is an index or a case-insensitive
// name substring; an override that matches nothing is an error, never a
// silent fallback. Choose returns the index and a sentence saying why.
func Choose(infos []AdapterInfo, override string) (int, string, error) {
	if len(infos) == 0 {
		return -1, "", ErrNoAdapter
	}
	override = strings.TrimSpace(override)
	if override != "" {
		if i, err := strconv.Atoi(override); err == nil {
			if i < 0 || i >= len(infos) {
				return -1, "", fmt.Errorf("adapter index %d out of range: %d adapters (see step-gpu devices)", i, len(infos))
			}
			return i, fmt.Sprintf("chosen by index %d", i), nil
		}
		for i, a := range infos {
			if strings.Contains(strings.ToLower(a.Name), strings.ToLower(override)) {
				return i, fmt.Sprintf("chosen by name match %q", override), nil
			}
		}
		return -1, "", fmt.Errorf("no adapter name contains %q (see step-gpu devices)", override)
	}
	best := 0
	for i, a := range infos {
		if typeRank(a.adapterType) < typeRank(infos[best].adapterType) {
			best = i
		}
	}
	return best, fmt.Sprintf("preferred %s adapter", infos[best].Type), nil
}

// ResolveOverride returns the flag value if set, else the environment
// variable AdapterEnv.
func ResolveOverride(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(AdapterEnv)
}

// ListAdapters enumerates every adapter and marks the one Choose would pick
// for the given override.
func ListAdapters(override string) ([]AdapterInfo, error) {
	quietDrivers()
	inst := wgpu.CreateInstance(nil)
	defer inst.Release()
	adapters, infos := enumerate(inst)
	for _, a := range adapters {
		defer a.Release()
	}
	if len(infos) == 0 {
		return nil, ErrNoAdapter
	}
	i, _, err := Choose(infos, ResolveOverride(override))
	if err != nil {
		return infos, err
	}
	infos[i].Chosen = true
	return infos, nil
}

// quietDrivers keeps wgpu to errors only and gives Mesa's window-system code
// a private XDG_RUNTIME_DIR when none is set, so headless runs (CI, servers)
// do not print a driver complaint for every instance.
func quietDrivers() {
	wgpu.SetLogLevel(wgpu.LogLevelError)
	if os.Getenv("XDG_RUNTIME_DIR") != "" {
		return
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("step-gpu-runtime-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err == nil {
		os.Setenv("XDG_RUNTIME_DIR", dir)
	}
}
