package gpu

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
)

// BindKind is the kind of one binding in a kernel's bind group 0.
type BindKind int

// The binding kinds a kernel may declare. Kernels list them in binding order;
// the layout is explicit because the automatic one drops unused bindings and
// cannot express unfilterable float textures.
const (
	BindUniform            BindKind = iota // var<uniform>
	BindRead                               // var<storage, read>
	BindReadWrite                          // var<storage, read_write>
	BindTexture                            // texture_2d<f32>, unfilterable float
	BindStorageTexture                     // texture_storage_2d<rgba32float, write>
	BindStorageTextureRead                 // texture_storage_2d<rgba32float, read>; needs Device.StorageTextureRead
)

func (k BindKind) code() string { return [...]string{"u", "r", "w", "t", "s", "v"}[k] }

// Kernel names one compute entry point and how to build it.
type Kernel struct {
	// Name is the kernel family and entry, for errors and logs, e.g. "rmsnorm/forward".
	Name string
	// Source is the WGSL text with {{KEY}} placeholders.
	Source string
	// Entry is the entry-point function name.
	Entry string
	// Bindings lists the kinds of bindings 0..n-1 of group 0.
	Bindings []BindKind
	// Subs are the template values substituted for {{KEY}}.
	Subs map[string]string
}

// Pipeline is a compiled compute pipeline with its explicit layout.
type Pipeline struct {
	Name     string
	Bindings []BindKind
	p        *wgpu.ComputePipeline
	layout   *wgpu.BindGroupLayout
	key      string
	// warm is set once the pipeline has run: lavapipe compiles a pipeline
	// inside the first submission that uses it (up to seconds for large
	// kernels), so the recorder gives a first use a submission of its own.
	warm bool
}

func (p *Pipeline) release() { p.p.Release() }

// Expand substitutes {{KEY}} placeholders and fails if any remain, so a
// missing template value never reaches the WGSL compiler as odd syntax.
func Expand(src string, subs map[string]string) (string, error) {
	keys := make([]string, 0, len(subs))
	for k := range subs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, "{{"+k+"}}", subs[k])
	}
	out := strings.NewReplacer(pairs...).Replace(src)
	if i := strings.Index(out, "{{"); i >= 0 {
		end := min(len(out), i+32)
		return "", fmt.Errorf("unsubstituted template value near %q", out[i:end])
	}
	return out, nil
}

func kernelKey(k Kernel) string {
	keys := make([]string, 0, len(k.Subs))
	for key := range k.Subs {
		keys = append(keys, key+"="+k.Subs[key])
	}
	sort.Strings(keys)
	return k.Name + "|" + k.Entry + "|" + strings.Join(keys, ",")
}

// Pipeline returns the compiled pipeline for k, building it on first use and
// caching it by name, entry point and template values.
func (d *Device) Pipeline(k Kernel) (*Pipeline, error) {
	key := kernelKey(k)
	if p, ok := d.pipelines[key]; ok {
		return p, nil
	}
	if slices.Contains(k.Bindings, BindStorageTextureRead) && !d.StorageTextureRead {
		return nil, fmt.Errorf("create pipeline %s: read-only storage textures are not available on %s (%s)",
			k.Name, d.Info.Name, d.StorageTextureNote)
	}
	src, err := Expand(k.Source, k.Subs)
	if err != nil {
		return nil, fmt.Errorf("create pipeline %s: %w", k.Name, err)
	}
	layout, err := d.layout(k.Bindings)
	if err != nil {
		return nil, fmt.Errorf("create pipeline %s: %w", k.Name, err)
	}
	mod, err := d.dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
		Label:          k.Name,
		WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src},
	})
	if err != nil {
		return nil, fmt.Errorf("create pipeline %s: shader module: %w", k.Name, err)
	}
	defer mod.Release()
	pl, err := d.dev.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{
		Label:            k.Name,
		BindGroupLayouts: []*wgpu.BindGroupLayout{layout},
	})
	if err != nil {
		return nil, fmt.Errorf("create pipeline %s: layout: %w", k.Name, err)
	}
	defer pl.Release()
	cp, err := d.dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
		Label:   k.Name,
		Layout:  pl,
		Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: k.Entry},
	})
	if err != nil {
		return nil, fmt.Errorf("create pipeline %s: %w", k.Name, err)
	}
	p := &Pipeline{Name: k.Name, Bindings: append([]BindKind(nil), k.Bindings...), p: cp, layout: layout, key: key}
	d.pipelines[key] = p
	return p, nil
}

// layout returns the cached bind-group layout for a list of binding kinds.
func (d *Device) layout(kinds []BindKind) (*wgpu.BindGroupLayout, error) {
	var sig strings.Builder
	for _, k := range kinds {
		sig.WriteString(k.code())
	}
	if l, ok := d.layouts[sig.String()]; ok {
		return l, nil
	}
	entries := make([]wgpu.BindGroupLayoutEntry, len(kinds))
	for i, k := range kinds {
		e := wgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: wgpu.ShaderStageCompute}
		switch k {
		case BindUniform:
			e.Buffer.Type = wgpu.BufferBindingTypeUniform
		case BindRead:
			e.Buffer.Type = wgpu.BufferBindingTypeReadOnlyStorage
		case BindReadWrite:
			e.Buffer.Type = wgpu.BufferBindingTypeStorage
		case BindTexture:
			e.Texture = wgpu.TextureBindingLayout{SampleType: wgpu.TextureSampleTypeUnfilterableFloat, ViewDimension: wgpu.TextureViewDimension2D}
		case BindStorageTextureRead:
			e.StorageTexture = wgpu.StorageTextureBindingLayout{Access: wgpu.StorageTextureAccessReadOnly,
				Format: wgpu.TextureFormatRGBA32Float, ViewDimension: wgpu.TextureViewDimension2D}
		case BindStorageTexture:
			e.StorageTexture = wgpu.StorageTextureBindingLayout{Access: wgpu.StorageTextureAccessWriteOnly,
				Format: wgpu.TextureFormatRGBA32Float, ViewDimension: wgpu.TextureViewDimension2D}
		}
		entries[i] = e
	}
	l, err := d.dev.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: sig.String(), Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("bind group layout %s: %w", sig.String(), err)
	}
	d.layouts[sig.String()] = l
	return l, nil
}
