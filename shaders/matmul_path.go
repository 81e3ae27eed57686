package shaders

import (
	"fmt"
	"sync"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
)

// MatmulPath selects the kernels Matmul uses on a device.
type MatmulPath int

// The paths. MatmulAuto measures both on a moderate product the first time
// Matmul runs on a device and keeps the faster (the texture path must be
// clearly faster, by matmulTexMargin, since it costs packing memory); the
// choice is by measurement, never by vendor or adapter name.
const (
	MatmulAuto    MatmulPath = iota // measure once per device, keep the faster
	MatmulSimple                    // storage-buffer register tiles (matmul.wgsl)
	MatmulTexture                   // pack to textures, then texture-fed tiles (matmul_tex.wgsl)
)

// String names the path.
func (p MatmulPath) String() string {
	switch p {
	case MatmulAuto:
		return "auto"
	case MatmulSimple:
		return "simple"
	case MatmulTexture:
		return "texture"
	}
	return fmt.Sprintf("MatmulPath(%d)", int(p))
}

// matmulTexMargin is how much faster the texture path must measure to be
// chosen: a tie goes to the simple path, which needs no packing textures.
const matmulTexMargin = 1.2

// matmulState is what the family keeps per device: the path setting, the
// measured choice, and the packing textures keyed by role and size.
type matmulState struct {
	setting MatmulPath
	chosen  MatmulPath
	warm    bool // the texture path's kernels have run once
	tex     map[matmulTexKey]*gpu.Texture
}

type matmulTexKey struct {
	role string
	w, h uint32
}

var (
	matmulMu     sync.Mutex
	matmulStates = map[*gpu.Device]*matmulState{}
)

func matmulStateOf(d *gpu.Device) *matmulState {
	matmulMu.Lock()
	defer matmulMu.Unlock()
	s := matmulStates[d]
	if s == nil {
		s = &matmulState{tex: map[matmulTexKey]*gpu.Texture{}}
		matmulStates[d] = s
	}
	return s
}

// SetMatmulPath pins the kernels Matmul uses on d; MatmulAuto (the default)
// measures both on first use.
func SetMatmulPath(d *gpu.Device, p MatmulPath) {
	s := matmulStateOf(d)
	s.setting = p
}

// MatmulPathOf returns the path Matmul uses on d, measuring it first when the
// setting is MatmulAuto and no measurement was made yet.
func MatmulPathOf(d *gpu.Device) (MatmulPath, error) { return matmulPathFor(d) }

// ReleaseMatmulTextures frees d's cached packing textures (they are
// allocated once per size, in gpu.CatCache); call it before closing d.
func ReleaseMatmulTextures(d *gpu.Device) {
	s := matmulStateOf(d)
	for k, t := range s.tex {
		t.Release()
		delete(s.tex, k)
	}
}

func matmulPathFor(d *gpu.Device) (MatmulPath, error) {
	s := matmulStateOf(d)
	if s.setting == MatmulTexture {
		return MatmulTexture, matmulTexWarm(d)
	}
	if s.setting != MatmulAuto {
		return s.setting, nil
	}
	if s.chosen == MatmulAuto {
		p, err := matmulMeasure(d)
		if err != nil {
			return 0, err
		}
		s.chosen = p
	}
	return s.chosen, nil
}

// matmulTexWarm runs the texture path once on a tiny product in a
// submission of its own, the first time it is used on a device. lavapipe
// compiles a kernel inside the first submission that dispatches it, and the
// tiled kernel takes seconds to compile with a cold shader cache: sharing
// that submission with real work could pass the 5 s watchdog (WEBGPU.md).
func matmulTexWarm(d *gpu.Device) error {
	s := matmulStateOf(d)
	if s.warm {
		return nil
	}
	var bufs []*gpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Release()
		}
	}()
	for _, name := range []string{"out", "a", "b"} {
		b, err := d.NewBuffer("matmul warm-up "+name, gpu.CatCache, 16)
		if err != nil {
			return fmt.Errorf("matmul warm-up: %w", err)
		}
		bufs = append(bufs, b)
	}
	// 1x1x1 packs A for tiled; 1x1x4 reads A in place with tiled_sa. Each
	// gets a submission of its own.
	for _, K := range []int{1, 4} {
		op, err := newMatmulOp(bufs[0], bufs[1], bufs[2], 1, 1, K, NT, false)
		if err != nil {
			return err
		}
		r := d.NewRecorder()
		if err := matmulTexture(r, op); err != nil {
			return fmt.Errorf("matmul warm-up: %w", err)
		}
		if err := r.Flush(); err != nil {
			return fmt.Errorf("matmul warm-up: %w", err)
		}
	}
	s.warm = true
	return nil
}

// matmulProbe is the product timed to choose a path: a few ms on lavapipe,
// large enough that a GPU's dispatch overhead does not decide alone.
const matmulProbe = 256

// matmulMeasure times both paths on a matmulProbe cube (NT, the forward
// layout) after a first run that compiles the pipelines, and returns the
// faster, the texture path only when faster by matmulTexMargin.
func matmulMeasure(d *gpu.Device) (MatmulPath, error) {
	if d.Limits.MaxTextureDimension2D < matmulProbe {
		return MatmulSimple, nil
	}
	n := matmulProbe
	var bufs []*gpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Release()
		}
	}()
	for _, name := range []string{"out", "a", "b"} {
		b, err := d.NewBuffer("matmul probe "+name, gpu.CatCache, uint64(4*n*n))
		if err != nil {
			return 0, fmt.Errorf("matmul path probe: %w", err)
		}
		bufs = append(bufs, b)
	}
	op, err := newMatmulOp(bufs[0], bufs[1], bufs[2], n, n, n, NT, false)
	if err != nil {
		return 0, err
	}
	if err := matmulTexWarm(d); err != nil {
		return 0, err
	}
	best := map[MatmulPath]time.Duration{}
	for _, path := range []MatmulPath{MatmulSimple, MatmulTexture} {
		for run := 0; run < 3; run++ {
			r := d.NewRecorder()
			start := time.Now()
			if path == MatmulTexture {
				err = matmulTexture(r, op)
			} else {
				err = matmulSimple(r, op)
			}
			if err == nil {
				err = r.Flush()
			}
			if err != nil {
				return 0, fmt.Errorf("matmul path probe (%v): %w", path, err)
			}
			if el := time.Since(start); run > 0 && (best[path] == 0 || el < best[path]) {
				best[path] = el
			}
		}
	}
	if float64(best[MatmulSimple]) > matmulTexMargin*float64(best[MatmulTexture]) {
		return MatmulTexture, nil
	}
	return MatmulSimple, nil
}
