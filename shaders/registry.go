package shaders

import (
	"embed"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
)

//go:embed *.wgsl
var files embed.FS

// family is one WGSL file and the kernels its Go owner builds from it.
type family struct {
	name    string
	source  string
	kernels []gpu.Kernel
}

var families = map[string]*family{}

// own registers the Go owner of NAME.wgsl and returns its source. Owners
// call it from a package-level var, so every family is known at init.
func own(name string) string {
	raw, err := files.ReadFile(name + ".wgsl")
	if err != nil {
		panic(fmt.Sprintf("shaders: no embedded %s.wgsl: %v", name, err))
	}
	if _, dup := families[name]; dup {
		panic("shaders: family " + name + " owned twice")
	}
	families[name] = &family{name: name, source: string(raw)}
	return string(raw)
}

// kernel declares one entry point of a family and returns its description.
// The default template values given here are the ones the compile test uses.
func kernel(fam, entry string, bindings []gpu.BindKind, subs map[string]string) gpu.Kernel {
	return kernelNamed(fam+"/"+entry, fam, entry, bindings, subs)
}

// kernelNamed is kernel under a name of its own, for families that build
// several kernels from one entry point (the name is what pipelines, errors
// and profiles show, so it is registered as given).
func kernelNamed(name, fam, entry string, bindings []gpu.BindKind, subs map[string]string) gpu.Kernel {
	f, ok := families[fam]
	if !ok {
		panic("shaders: kernel of unowned family " + fam)
	}
	k := gpu.Kernel{Name: name, Source: f.source, Entry: entry, Bindings: bindings, Subs: subs}
	f.kernels = append(f.kernels, k)
	return k
}

// with returns k with some template values replaced.
func with(k gpu.Kernel, subs map[string]string) gpu.Kernel {
	m := make(map[string]string, len(k.Subs)+len(subs))
	for key, v := range k.Subs {
		m[key] = v
	}
	for key, v := range subs {
		m[key] = v
	}
	k.Subs = m
	return k
}

// Families lists the owned WGSL families and their entry points, sorted.
func Families() map[string][]string {
	out := map[string][]string{}
	for name, f := range families {
		for _, k := range f.kernels {
			out[name] = append(out[name], k.Entry)
		}
		sort.Strings(out[name])
	}
	return out
}

// Files lists the embedded WGSL base names, sorted.
func Files() []string {
	entries, _ := files.ReadDir(".")
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wgsl") {
			out = append(out, strings.TrimSuffix(e.Name(), ".wgsl"))
		}
	}
	sort.Strings(out)
	return out
}

// CompileAll creates the pipeline of every declared kernel with its
// default template values and returns how many it created, stopping at the
// first error; it is how the tests and `step-gpu devices --check` prove
// every shader is valid on a device (backends that compile lazily, like
// lavapipe, finish compiling at a pipeline's first dispatch). Kernels
// binding read-only storage textures are skipped where they are not usable
// (StorageTexturesUsable); where the first of them fails, storage textures
// are marked failed on the device, as a failure in use would mark them,
// and the rest of them are skipped.
func CompileAll(d *gpu.Device) (int, error) {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		for _, k := range families[name].kernels {
			tex := slices.Contains(k.Bindings, gpu.BindStorageTextureRead)
			if tex && !storageTexUsable(d) {
				continue
			}
			_, err := d.Pipeline(k)
			if err != nil && tex {
				storageTexFailed(d, err)
				continue
			}
			if err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// elems4 is the estimated work per element for elementwise kernels, used
// only to bound submissions.
const elems4 = 4
