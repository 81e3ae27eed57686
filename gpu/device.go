package gpu

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"
)

// Options configure Open.
type Options struct {
	// Adapter overrides the automatic choice: an index or a name substring.
	// Empty means the STEP_GPU_ADAPTER environment variable, then automatic.
	Adapter string
}

// Device is an open WebGPU device with its ledger and caches. A Device is
// used from one goroutine at a time; the ledger alone is safe for concurrent
// reads.
type Device struct {
	inst    *wgpu.Instance
	adapter *wgpu.Adapter
	dev     *wgpu.Device
	queue   *wgpu.Queue

	// Info describes the chosen adapter; Reason says why it was chosen.
	Info   AdapterInfo
	Reason string
	// Limits are the limits the device was created with (the adapter's own).
	Limits wgpu.Limits
	// Ledger counts every byte this device allocated, by category.
	Ledger *Ledger
	// SubmitBudget bounds the estimated floating-point work recorded into one
	// submission, so that no submission nears the 5 s watchdog (WEBGPU.md).
	SubmitBudget float64

	// StorageTextureRead says whether kernels may bind rgba32float textures
	// as read-only storage textures (BindStorageTextureRead). It needs the
	// adapter's native feature texture-adapter-specific-format-features and
	// a probe kernel that reads one back correctly at start-up.
	StorageTextureRead bool
	// StorageTextureNote says why StorageTextureRead is false ("" when true).
	StorageTextureNote string

	// Profile, when set, times every dispatch alone (see Profile).
	Profile *Profile

	pendingWrites uint64

	pipelines map[string]*Pipeline
	layouts   map[string]*wgpu.BindGroupLayout
	binds     *bindCache

	lostMu sync.Mutex
	lost   error
}

// Requirements are the limits every step-gpu kernel relies on. They are the
// WebGPU defaults except where noted, so any conformant adapter passes.
var Requirements = []struct {
	Name string
	Min  uint64
	Get  func(wgpu.Limits) uint64
}{
	{"maxStorageBuffersPerShaderStage", 8, func(l wgpu.Limits) uint64 { return uint64(l.MaxStorageBuffersPerShaderStage) }},
	{"maxComputeWorkgroupStorageSize", 16384, func(l wgpu.Limits) uint64 { return uint64(l.MaxComputeWorkgroupStorageSize) }},
	{"maxComputeInvocationsPerWorkgroup", 256, func(l wgpu.Limits) uint64 { return uint64(l.MaxComputeInvocationsPerWorkgroup) }},
	{"maxComputeWorkgroupSizeX", 256, func(l wgpu.Limits) uint64 { return uint64(l.MaxComputeWorkgroupSizeX) }},
	{"maxComputeWorkgroupsPerDimension", 65535, func(l wgpu.Limits) uint64 { return uint64(l.MaxComputeWorkgroupsPerDimension) }},
	{"maxStorageBufferBindingSize", 128 << 20, func(l wgpu.Limits) uint64 { return l.MaxStorageBufferBindingSize }},
	{"maxBufferSize", 256 << 20, func(l wgpu.Limits) uint64 { return l.MaxBufferSize }},
	{"maxBindGroups", 4, func(l wgpu.Limits) uint64 { return uint64(l.MaxBindGroups) }},
	{"maxTextureDimension2D", 8192, func(l wgpu.Limits) uint64 { return uint64(l.MaxTextureDimension2D) }},
}

// CheckLimits returns an error naming the first limit below what step-gpu
// needs, or nil.
func CheckLimits(l wgpu.Limits) error {
	for _, r := range Requirements {
		if got := r.Get(l); got < r.Min {
			return fmt.Errorf("adapter limit %s is %d, step-gpu needs at least %d", r.Name, got, r.Min)
		}
	}
	return nil
}

// Open chooses an adapter and creates a device with the adapter's real
// limits (WebGPU's defaults are far smaller), after checking that they meet
// Requirements.
func Open(opt Options) (*Device, error) {
	quietDrivers()
	inst := wgpu.CreateInstance(nil)
	adapters, infos := enumerate(inst)
	if len(infos) == 0 {
		inst.Release()
		return nil, ErrNoAdapter
	}
	idx, reason, err := Choose(infos, ResolveOverride(opt.Adapter))
	if err != nil {
		for _, a := range adapters {
			a.Release()
		}
		inst.Release()
		return nil, err
	}
	for i, a := range adapters {
		if i != idx {
			a.Release()
		}
	}
	d := &Device{inst: inst, adapter: adapters[idx], Info: infos[idx], Reason: reason, Ledger: &Ledger{}}
	d.Info.Chosen = true
	if err := d.init(); err != nil {
		d.adapter.Release()
		inst.Release()
		return nil, fmt.Errorf("open adapter %q: %w", d.Info.Name, err)
	}
	return d, nil
}

func (d *Device) init() error {
	lim := d.Info.Limits
	if err := CheckLimits(lim); err != nil {
		return err
	}
	// The binding reads garbage for the push-constant limit and device
	// creation then fails (WEBGPU.md), so leave it undefined.
	lim.MaxPushConstantSize = wgpu.LimitU32Undefined
	desc := &wgpu.DeviceDescriptor{Label: "step-gpu", RequiredLimits: &wgpu.RequiredLimits{Limits: lim}}
	// Read-only storage textures need the adapter's own format features in
	// this wgpu; request them where the adapter offers them.
	for _, f := range d.adapter.EnumerateFeatures() {
		if f == wgpu.NativeFeatureTextureAdapterSpecificFormatFeatures {
			desc.RequiredFeatures = append(desc.RequiredFeatures, f)
			d.StorageTextureRead = true
		}
	}
	if LostCallbackSupported() {
		desc.DeviceLostCallback = func(reason wgpu.DeviceLostReason, msg string) {
			d.lostMu.Lock()
			defer d.lostMu.Unlock()
			if d.lost == nil && reason != wgpu.DeviceLostReasonDestroyed {
				d.lost = fmt.Errorf("device lost (%s): %s", reason, msg)
			}
		}
	}
	dev, err := d.adapter.RequestDevice(desc)
	if err != nil {
		return fmt.Errorf("request device: %w", err)
	}
	d.dev = dev
	d.queue = dev.GetQueue()
	d.Limits = dev.GetLimits().Limits
	d.pipelines = map[string]*Pipeline{}
	d.layouts = map[string]*wgpu.BindGroupLayout{}
	d.binds = newBindCache()
	d.SubmitBudget = defaultSubmitBudget(d.Info.adapterType)
	if !d.StorageTextureRead {
		d.StorageTextureNote = "it lacks the native feature texture-adapter-specific-format-features"
	} else if err := d.probeStorageTextureRead(); err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		d.StorageTextureRead, d.StorageTextureNote = false, "its probe kernel failed: "+first
	}
	// The probe's few bytes are not part of any run's memory.
	d.Ledger.ResetPeak()
	return nil
}

// LostCallbackSupported reports whether a device-lost callback can be
// installed. The binding stores a Go pointer inside a Go-allocated C struct
// when it passes the callback, which Go's default cgo pointer check rejects
// with a panic; the check is off only when GODEBUG has cgocheck=0, which the
// step-gpu binary arranges for itself at start-up (cli.Main). Without the
// callback a lost device still surfaces as an error from the next call.
func LostCallbackSupported() bool {
	return strings.Contains(os.Getenv("GODEBUG"), "cgocheck=0") && os.Getenv("STEP_GPU_NO_LOST") == ""
}

// defaultSubmitBudget returns the floating-point work allowed in one
// submission. On the CPU adapter the slowest kernels measured here run near
// 1.5 GFLOP/s, so 1.5e9 FLOP keeps a submission near a second, well under
// the 5 s watchdog even with a pipeline compiling inside it. Real GPUs are
// a thousand times faster; 1e12 FLOP is still well under a second on them.
func defaultSubmitBudget(t wgpu.AdapterType) float64 {
	if t == wgpu.AdapterTypeCPU {
		return 1.5e9
	}
	return 1e12
}

// IsCPU reports whether the device is a CPU adapter (lavapipe, WARP, ...).
func (d *Device) IsCPU() bool { return d.Info.adapterType == wgpu.AdapterTypeCPU }

// Lost returns the device-lost error, or nil while the device is healthy.
func (d *Device) Lost() error {
	d.lostMu.Lock()
	defer d.lostMu.Unlock()
	return d.lost
}

// InjectLoss marks the device lost with reason, exactly as the device-lost
// callback does on a real loss, so that every later submission, readback and
// allocation fails with the device-lost error. It exists for fault
// injection (docs/PLATFORM.md). The binding has no Device.Destroy, and
// wgpu-native v22's wgpuDeviceDestroy, called through cgo, was measured to
// change nothing on lavapipe (buffers still read and write, the lost
// callback never runs), so the loss is injected at the place every gpu call
// consults.
func (d *Device) InjectLoss(reason string) {
	d.lostMu.Lock()
	defer d.lostMu.Unlock()
	if d.lost == nil {
		d.lost = fmt.Errorf("device lost (%s): %s", wgpu.DeviceLostReasonDestroyed, reason)
	}
}

// Close releases the caches, the device and the instance. Buffers still
// live stay counted in the ledger, which lets tests find leaks.
func (d *Device) Close() {
	if d == nil || d.dev == nil {
		return
	}
	d.binds.releaseAll()
	for _, p := range d.pipelines {
		p.release()
	}
	for _, l := range d.layouts {
		l.Release()
	}
	d.queue.Release()
	d.dev.Release()
	d.adapter.Release()
	d.inst.Release()
	d.dev = nil
}
