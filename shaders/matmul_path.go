package shaders

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
)

// MatmulPath selects the kernels Matmul uses on a device.
type MatmulPath int

// The paths. MatmulAuto measures them on a moderate product the first time
// Matmul runs on a device and keeps the fastest (a texture path must be
// clearly faster than the simple one, by matmulTexMargin, since it costs
// packing memory); the choice is by measurement, never by vendor or adapter
// name.
const (
	MatmulAuto           MatmulPath = iota // measure once per device, keep the fastest
	MatmulSimple                           // storage-buffer register tiles (matmul.wgsl)
	MatmulTexture                          // operands into textures, read sampled (matmul_tex.wgsl)
	MatmulStorageTexture                   // the same kernels reading read-only storage textures
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
	case MatmulStorageTexture:
		return "storage-texture"
	}
	return fmt.Sprintf("MatmulPath(%d)", int(p))
}

// ParseMatmulPath reads a path's name as String writes it ("" is auto).
func ParseMatmulPath(s string) (MatmulPath, error) {
	if s == "" {
		return MatmulAuto, nil
	}
	for p := MatmulAuto; p <= MatmulStorageTexture; p++ {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown matmul path %q (want auto, simple, texture or storage-texture)", s)
}

// textured says whether the path runs the texture-fed kernels.
func (p MatmulPath) textured() bool { return p == MatmulTexture || p == MatmulStorageTexture }

// matmulTexSet indexes the per-device texture kernel state ([2] arrays of
// matmulState and matmulTexKernels): 0 sampled, 1 read-only storage.
func matmulTexSet(storage bool) int {
	if storage {
		return 1
	}
	return 0
}

// matmulOn records the product with the kernels of a path (not MatmulAuto).
func matmulOn(r *gpu.Recorder, op *matmulOp, p MatmulPath) error {
	if p.textured() {
		return matmulTexture(r, op, p == MatmulStorageTexture)
	}
	return matmulSimple(r, op)
}

// matmulTexMargin is how much faster the texture path must measure to be
// chosen: a tie goes to the simple path, which needs no packing textures.
const matmulTexMargin = 1.2

// matmulState is what the family keeps per device: the path setting, the
// measured choice, and the packing textures keyed by role and size.
type matmulState struct {
	setting MatmulPath
	chosen  MatmulPath
	probe   string  // what the measurement saw, for MatmulReport
	warm    [2]bool // the texture kernels have run once: [0] sampled, [1] storage
	tex     map[matmulTexKey]*gpu.Texture
	pipes   [2][]*gpu.Pipeline // the texture kernels, resolved on first use, as warm
	// texBroken, when set, says why a storage-texture kernel failed on the
	// device: no kernel of the package uses storage textures there after.
	texBroken string
	// attnPipes holds attention's resolved pipelines by (kernel set,
	// column chunk): see attnRowsResolve.
	attnPipes map[[2]int]attnRowsPipes
}

// storageTexUsable says whether kernels may read read-only storage
// textures on d: the device offers them (gpu.Device.StorageTextureRead,
// which a start-up probe confirmed) and no storage-texture kernel of this
// package has failed there since (storageTexFailed).
func storageTexUsable(d *gpu.Device) bool {
	return d.StorageTextureRead && matmulStateOf(d).texBroken == ""
}

// storageTexFailed records that a storage-texture kernel failed on d with
// err, so that the matmul and attention use their other kernels from then
// on; the matmul's report says why.
func storageTexFailed(d *gpu.Device, err error) {
	s := matmulStateOf(d)
	if s.texBroken == "" {
		first, _, _ := strings.Cut(err.Error(), "\n")
		s.texBroken = first
	}
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

// MatmulReport says which path Matmul uses on d and why: the setting, or
// the probe's timings when the path was measured ("" before first use).
func MatmulReport(d *gpu.Device) string {
	s := matmulStateOf(d)
	switch {
	case s.setting != MatmulAuto:
		return fmt.Sprintf("matmul: %v path (set)", s.setting)
	case s.chosen == MatmulAuto:
		return ""
	}
	return fmt.Sprintf("matmul: %v path (%s)", s.chosen, s.probe)
}

// ReleaseMatmulTextures frees d's cached textures, the matmul's packing
// textures and attention's input textures (allocated once per role and
// size, in gpu.CatCache); call it before closing d.
func ReleaseMatmulTextures(d *gpu.Device) {
	s := matmulStateOf(d)
	for k, t := range s.tex {
		t.Release()
		delete(s.tex, k)
	}
}

func matmulPathFor(d *gpu.Device) (MatmulPath, error) {
	s := matmulStateOf(d)
	if s.setting != MatmulAuto {
		return s.setting, matmulTexWarm(d, s.setting)
	}
	if s.chosen == MatmulAuto {
		p, probe, err := matmulMeasure(d)
		if err != nil {
			return 0, err
		}
		if p, probe, err = matmulWarmChosen(d, p, probe); err != nil {
			return 0, err
		}
		s.chosen, s.probe = p, probe
	}
	if s.chosen == MatmulStorageTexture && !storageTexUsable(d) {
		// Another family's storage-texture kernel failed since the probe
		// (storageTexFailed): leave them here too.
		s.chosen, s.probe = MatmulTexture, s.probe+fmt.Sprintf("; storage textures failed since (%s)", s.texBroken)
		if err := matmulTexWarm(d, MatmulTexture); err != nil {
			return 0, err
		}
	}
	return s.chosen, nil
}

// StorageTexturesUsable says whether the package's kernels read read-only
// storage textures on d, and if not, why: the device lacks them, or one of
// its storage-texture kernels failed there (the kernels then use sampled
// textures or buffers instead).
func StorageTexturesUsable(d *gpu.Device) (bool, string) {
	if !d.StorageTextureRead {
		return false, d.StorageTextureNote
	}
	if why := matmulStateOf(d).texBroken; why != "" {
		return false, "a storage-texture kernel failed: " + why
	}
	return true, ""
}

// matmulWarmChosen warms the path the probe chose. Where the storage-texture
// path passed the probe but one of its kernels then fails, the device's
// storage textures are marked unusable (storageTexFailed) and the sampled
// kernels, the same tiles, are used instead; the probe line says so.
func matmulWarmChosen(d *gpu.Device, p MatmulPath, probe string) (MatmulPath, string, error) {
	err := matmulTexWarm(d, p)
	if err == nil || p != MatmulStorageTexture {
		return p, probe, err
	}
	storageTexFailed(d, err)
	probe += fmt.Sprintf("; storage-texture warm-up failed (%s)", matmulStateOf(d).texBroken)
	return MatmulTexture, probe, matmulTexWarm(d, MatmulTexture)
}

// matmulTexWarm runs a texture path (nothing for the others) on tiny
// products that reach each of its kernels, each in a submission of its own,
// the first time it is used on a device, so that no compile lands in real
// work: lavapipe compiles a kernel inside the first submission that
// dispatches it, and the tiled kernels take seconds to compile with a cold
// shader cache.
func matmulTexWarm(d *gpu.Device, p MatmulPath) error {
	s := matmulStateOf(d)
	set := matmulTexSet(p == MatmulStorageTexture)
	if !p.textured() {
		return nil
	}
	if err := matmulWarmFail[p]; err != nil {
		return fmt.Errorf("matmul warm-up: %w", err)
	}
	if s.warm[set] {
		return nil
	}
	var bufs []*gpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Release()
		}
	}()
	for _, name := range []string{"out", "a", "b"} {
		b, err := d.NewBuffer("matmul warm-up "+name, gpu.CatCache, 4*64*64)
		if err != nil {
			return fmt.Errorf("matmul warm-up: %w", err)
		}
		bufs = append(bufs, b)
	}
	// NT 1x1x1 packs A for tiled; 1x1x4 reads A in place with tiled_sa;
	// 4x64x64 copies A and B's columns for tiled_bt; 1x64x64 reads A in
	// place with B's columns copied, tiled_sa_bt; TN 64x4x4 copies A's
	// columns for tiled_at.
	for _, w := range []struct {
		M, N, K int
		l       Layout
	}{{1, 1, 1, NT}, {1, 1, 4, NT}, {4, 64, 64, NT}, {1, 64, 64, NT}, {64, 4, 4, TN}} {
		op, err := newMatmulOp(bufs[0], bufs[1], bufs[2], w.M, w.N, w.K, w.l, false)
		if err != nil {
			return err
		}
		r := d.NewRecorder()
		if err := matmulOn(r, op, p); err != nil {
			r.Discard()
			return fmt.Errorf("matmul warm-up: %w", err)
		}
		if err := r.Flush(); err != nil {
			return fmt.Errorf("matmul warm-up: %w", err)
		}
	}
	s.warm[set] = true
	return nil
}

// matmulProbeFail and matmulWarmFail, when set, make the probe's runs or
// the warm-up of a path fail with their error, so tests can check the
// fallbacks where a device advertises read-only storage textures it cannot
// run.
var matmulProbeFail, matmulWarmFail = map[MatmulPath]error{}, map[MatmulPath]error{}

// matmulProbeRun records and submits one probe product on a path.
func matmulProbeRun(r *gpu.Recorder, op *matmulOp, path MatmulPath) error {
	if err := matmulProbeFail[path]; err != nil {
		return err
	}
	if err := matmulOn(r, op, path); err != nil {
		return err
	}
	return r.Flush()
}

// matmulProbe is the product timed to choose a path: tens of ms on
// lavapipe, large enough that fixed costs (a GPU's dispatch overhead, the
// texture path's copies and submissions) do not decide alone. At 256 the
// texture path measured only 1.4x faster there (4.1 against 5.8 ms, a
// margin noise could and sometimes did overturn, leaving training on the
// 5x slower simple path), against 5-7x at the sizes a model uses.
const matmulProbe = 512

// matmulProbeRuns is how many timed runs of each path the probe takes the
// fastest of. The two texture paths are 10-40% apart on lavapipe; with 3
// runs one probe in about ten kept the slower when a swing of the host
// lasted through all of them.
const matmulProbeRuns = 6

// matmulMeasure times the paths on a matmulProbe cube (NT, the forward
// layout), each after a first, untimed run that compiles its pipelines, and
// returns the fastest (a texture path only when faster than the simple one
// by matmulTexMargin) with a line saying what it measured. The storage
// texture path is tried only where the device offers read-only storage
// textures, and is dropped, with the reason in the line, if it fails there.
func matmulMeasure(d *gpu.Device) (MatmulPath, string, error) {
	if d.Limits.MaxTextureDimension2D < matmulProbe {
		return MatmulSimple, fmt.Sprintf("textures under %d texels", matmulProbe), nil
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
			return 0, "", fmt.Errorf("matmul path probe: %w", err)
		}
		bufs = append(bufs, b)
	}
	op, err := newMatmulOp(bufs[0], bufs[1], bufs[2], n, n, n, NT, false)
	if err != nil {
		return 0, "", err
	}
	paths := []MatmulPath{MatmulTexture, MatmulSimple}
	if storageTexUsable(d) {
		paths = append([]MatmulPath{MatmulStorageTexture}, paths...)
	}
	// Runs alternate between the paths so that a swing in the host's speed
	// (large on shared CPU machines) hits them alike; each path's first run
	// compiles its pipelines and is not timed.
	best := map[MatmulPath]time.Duration{}
	failed := map[MatmulPath]error{}
	for run := 0; run <= matmulProbeRuns; run++ {
		for _, path := range paths {
			if failed[path] != nil {
				continue
			}
			// A simple path already far behind needs no more runs.
			if tex := best[MatmulTexture]; path == MatmulSimple && tex > 0 && best[path] > 2*tex {
				continue
			}
			r := d.NewRecorder()
			start := time.Now()
			err = matmulProbeRun(r, op, path)
			if err != nil && path == MatmulStorageTexture {
				r.Discard()
				failed[path] = err
				delete(best, path)
				storageTexFailed(d, err)
				continue
			}
			if err != nil {
				return 0, "", fmt.Errorf("matmul path probe (%v): %w", path, err)
			}
			if el := time.Since(start); run > 0 && (best[path] == 0 || el < best[path]) {
				best[path] = el
			}
		}
	}
	probe := fmt.Sprintf("probe %d^3 NT:", n)
	for _, path := range paths {
		if err := failed[path]; err != nil {
			// wgpu's validation errors run to many lines; the first says what.
			first, _, _ := strings.Cut(err.Error(), "\n")
			probe += fmt.Sprintf(" %v failed (%s),", path, first)
		} else {
			probe += fmt.Sprintf(" %v %.2f ms,", path, best[path].Seconds()*1e3)
		}
	}
	probe = strings.TrimSuffix(probe, ",")
	tex := MatmulTexture
	if t := best[MatmulStorageTexture]; t > 0 && t < best[MatmulTexture] {
		tex = MatmulStorageTexture
	}
	if float64(best[MatmulSimple]) > matmulTexMargin*float64(best[tex]) {
		return tex, probe, nil
	}
	return MatmulSimple, probe, nil
}
