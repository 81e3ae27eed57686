package gpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// Texture is a 2-D rgba32float texture: W texels of four floats by H rows.
// Kernels use textures as read-only inputs where the device reads them faster
// than storage buffers (lavapipe does: see WEBGPU.md), and write them through
// a storage-texture binding.
type Texture struct {
	d    *Device
	tex  *wgpu.Texture
	view *wgpu.TextureView
	Name string
	Cat  Category
	W, H uint32
	id   uint64
	size uint64
}

// NewTexture allocates a W x H rgba32float texture usable as a sampled input
// and as a write-only storage texture.
func (d *Device) NewTexture(name string, cat Category, w, h uint32) (*Texture, error) {
	max := d.Limits.MaxTextureDimension2D
	if w == 0 || h == 0 || w > max || h > max {
		return nil, fmt.Errorf("allocate texture %s: %dx%d outside the device's maxTextureDimension2D %d", name, w, h, max)
	}
	t, err := d.dev.CreateTexture(&wgpu.TextureDescriptor{
		Label:         name,
		Size:          wgpu.Extent3D{Width: w, Height: h, DepthOrArrayLayers: 1},
		MipLevelCount: 1,
		SampleCount:   1,
		Dimension:     wgpu.TextureDimension2D,
		Format:        wgpu.TextureFormatRGBA32Float,
		Usage:         wgpu.TextureUsageTextureBinding | wgpu.TextureUsageStorageBinding | wgpu.TextureUsageCopyDst | wgpu.TextureUsageCopySrc,
	})
	if err != nil {
		return nil, fmt.Errorf("allocate texture %s: %w", name, err)
	}
	v, err := t.CreateView(nil)
	if err != nil {
		t.Release()
		return nil, fmt.Errorf("allocate texture %s: view: %w", name, err)
	}
	size := uint64(w) * uint64(h) * 16
	d.Ledger.add(cat, size)
	return &Texture{d: d, tex: t, view: v, Name: name, Cat: cat, W: w, H: h, id: nextBufferID.Add(1), size: size}, nil
}

// Release frees the texture, its cached bind groups and its ledger entry.
func (t *Texture) Release() {
	if t.tex == nil {
		panic("gpu: double release of texture " + t.Name)
	}
	t.d.binds.dropBuffer(t.id)
	t.view.Release()
	t.tex.Destroy()
	t.tex.Release()
	t.tex = nil
	t.d.Ledger.sub(t.Cat, t.size)
}
