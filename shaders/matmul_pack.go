package shaders

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
)

var (
	matmulPackSrc = own("matmul_pack")
	kMatmulPack   = kernel("matmul_pack", "pack",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindRead, gpu.BindStorageTexture}, map[string]string{"MODE": "2"})
)

// matmulPackSide is one operand's block to pack: a (rows, cols) block with
// strides (sy, sx) starting at element base of src, written into the first
// w x h texels of dst (h a multiple of 4).
type matmulPackSide struct {
	dst                            *gpu.Texture
	src                            gpu.Arg
	base, sy, sx, rows, cols, w, h int
}

// mode picks the kernel's read pattern (see matmul_pack.wgsl): vec4 reads
// along rows or along columns where the strides and base allow, else scalar
// reads. Every binding of the family holds whole vec4s (buffers are 16-byte
// padded; matmulBind starts and ends ranges on 4-element bounds).
func (s *matmulPackSide) mode() int {
	switch {
	case s.base%4 == 0 && (s.sx == 1 || s.cols == 1) && (s.sy%4 == 0 || s.rows == 1):
		return 0
	case s.base%4 == 0 && (s.sy == 1 || s.rows == 1) && (s.sx%4 == 0 || s.cols == 1):
		return 1
	}
	return 2
}

// matmulPackCopy lets matmulPack copy blocks that need no rearranging
// (copyable) instead of running the pack kernel; tests turn it off to pin
// the copy to the kernel.
var matmulPackCopy = true

// copyable reports whether the block's texels are rows of the source as
// they lie in memory, so that a buffer-to-texture copy can fill them: rows
// contiguous, whole texels (rows and columns multiples of 4, so neither the
// K padding the tiled kernel reads nor a partial texel is involved), and the
// byte offset and row pitch WebGPU's copies require (multiples of 16 and
// 256). The copy leaves the texels outside the block as they were; the tiled
// kernel reads them only for rows and columns of out it does not store.
func (s *matmulPackSide) copyable() bool {
	_, off := s.src.Buffer()
	return matmulPackCopy && s.sx == 1 && s.rows%4 == 0 && s.cols%4 == 0 && s.base%4 == 0 &&
		(off+4*uint64(s.base))%16 == 0 && (4*s.sy)%256 == 0 && s.cols/4 <= s.w && s.rows <= s.h
}

// matmulPack records packing one operand's block: a copy where the block is
// copyable (on lavapipe ~24 GB/s against ~1 GB/s for the kernel, whose
// storage loads are per-lane loops), else the pack kernel.
func matmulPack(r *gpu.Recorder, s *matmulPackSide) error {
	if s.h%4 != 0 {
		panic(fmt.Sprintf("matmul pack: height %d is not a multiple of 4", s.h))
	}
	if s.copyable() {
		buf, off := s.src.Buffer()
		if err := r.CopyToTexture(s.dst, buf, off+4*uint64(s.base), 4*uint64(s.sy), uint32(s.cols/4), uint32(s.rows)); err != nil {
			return fmt.Errorf("matmul pack %s: %w", s.dst.Name, err)
		}
		return nil
	}
	p, err := r.Device().Pipeline(with(kMatmulPack, map[string]string{"MODE": fmt.Sprint(s.mode())}))
	if err != nil {
		return err
	}
	g := gpu.Grid{X: uint32((s.w + 7) / 8), Y: uint32((s.h/4 + 7) / 8), Z: 1}
	params := gpu.Params(uint32(s.base), uint32(s.sy), uint32(s.sx), uint32(s.rows), uint32(s.cols), uint32(s.w), uint32(s.h), uint32(0))
	if err := r.Dispatch(p, g, float64(elems4*4*s.w*s.h), params, s.src, s.dst.Arg()); err != nil {
		return fmt.Errorf("matmul pack %s: %w", s.dst.Name, err)
	}
	return nil
}
