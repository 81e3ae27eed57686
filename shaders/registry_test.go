package shaders

import (
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/stretchr/testify/require"
)

// TestEveryFileHasOwner fails when a .wgsl file is embedded but no Go file
// owns it, or an owner declares no kernel.
func TestEveryFileHasOwner(t *testing.T) {
	fams := Families()
	for _, f := range Files() {
		entries, ok := fams[f]
		require.Truef(t, ok, "%s.wgsl has no Go owner (call own(%q) in %s.go)", f, f, f)
		require.NotEmptyf(t, entries, "%s.wgsl declares no kernel", f)
	}
}

// TestCompileAll compiles every declared kernel on the test device.
func TestCompileAll(t *testing.T) {
	d := gputest.Device(t)
	n, err := CompileAll(d)
	require.NoError(t, err)
	require.Greater(t, n, 40)
}

// TestKernelNamesUnique fails when two declared kernels share a name, so a
// pipeline, an error or a profile line always says which kernel it was.
func TestKernelNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range families {
		for _, k := range f.kernels {
			require.Falsef(t, seen[k.Name], "kernel name %s declared twice", k.Name)
			seen[k.Name] = true
		}
	}
}

// TestStorageTexturesPerKernel fails when a kernel binds more read-only
// storage textures than WebGPU's minimum maxStorageTexturesPerShaderStage
// (4): such a kernel would fail on devices that offer only the minimum.
func TestStorageTexturesPerKernel(t *testing.T) {
	for _, f := range families {
		for _, k := range f.kernels {
			n := 0
			for _, b := range k.Bindings {
				if b == gpu.BindStorageTextureRead || b == gpu.BindStorageTexture {
					n++
				}
			}
			require.LessOrEqualf(t, n, 4, "%s binds %d storage textures", k.Name, n)
		}
	}
}
