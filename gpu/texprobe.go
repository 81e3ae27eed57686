package gpu

import "fmt"

// storageTexProbe is the kernel probeStorageTextureRead runs: it copies one
// texel of a read-only storage texture into a buffer. Tests replace it with
// a kernel that reads the wrong texel to check the probe's failure branch.
var storageTexProbe = Kernel{Name: "gpu/storage-texture-probe", Entry: "main",
	Bindings: []BindKind{BindReadWrite, BindStorageTextureRead},
	Source: `
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(1) var t: texture_storage_2d<rgba32float, read>;
@compute @workgroup_size(1)
fn main() {
  out[0] = textureLoad(t, vec2<i32>(0, 0));
}`}

// probeStorageTextureRead checks that read-only rgba32float storage
// textures really work on the device: the adapter feature that allows them
// says only that some format's features are adapter-specific, and backends
// differ in which formats they can read (D3D12's typed UAV loads, Metal's
// read-write tiers). It compiles a kernel binding one, copies a known texel
// into a 1x1 texture, dispatches, and reads the texel back through a
// buffer; any error or a wrong value means the feature is not usable.
func (d *Device) probeStorageTextureRead() error {
	want := []float32{1.5, -2.25, 3e-5, 7}
	src, err := d.NewBuffer("storage texture probe src", CatScratch, 256)
	if err != nil {
		return err
	}
	defer src.Release()
	if err := src.WriteF32(0, want); err != nil {
		return err
	}
	out, err := d.NewBuffer("storage texture probe out", CatScratch, 16)
	if err != nil {
		return err
	}
	defer out.Release()
	tex, err := d.NewTexture("storage texture probe", CatScratch, 1, 1)
	if err != nil {
		return err
	}
	defer tex.Release()
	p, err := d.Pipeline(storageTexProbe)
	if err != nil {
		return err
	}
	r := d.NewRecorder()
	if err := r.CopyToTexture(tex, src, 0, 256, 1, 1); err != nil {
		r.Discard()
		return err
	}
	if err := r.Dispatch(p, Grid{1, 1, 1}, 1, nil, out.Arg(), tex.Arg()); err != nil {
		r.Discard()
		return err
	}
	if err := r.Flush(); err != nil {
		return err
	}
	got, err := out.ReadF32(0, 4)
	if err != nil {
		return err
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("read back %v, want %v", got, want)
		}
	}
	return nil
}
