package checkpoints

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmihailenco/msgpack/v5"
)

// Tensor is a named tensor to write.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Group Group
	Data  []byte
}

// Write writes a checkpoint to path atomically: the bytes go to a temporary
// file in the same directory, which is synced and then renamed over path,
// and the directory is synced. The header's tensor table is filled in here.
func Write(path string, h Header, tensors []Tensor) error {
	h.Tensors = h.Tensors[:0]
	off := uint64(0)
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("write checkpoint %s: tensor %s twice", path, t.Name)
		}
		seen[t.Name] = true
		e := TensorEntry{Name: t.Name, DType: t.DType, Shape: t.Shape, Group: t.Group, Offset: off,
			Length: uint64(len(t.Data)), CRC32C: CRC(t.Data)}
		if err := checkEntry(e); err != nil {
			return fmt.Errorf("write checkpoint %s: %w", path, err)
		}
		h.Tensors = append(h.Tensors, e)
		off = align(off + e.Length)
	}
	head, err := msgpack.Marshal(&h)
	if err != nil {
		return fmt.Errorf("write checkpoint %s: encode header: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	var pre [prefixLen]byte
	copy(pre[:8], Magic)
	binary.LittleEndian.PutUint32(pre[8:], Version)
	binary.LittleEndian.PutUint64(pre[12:], uint64(len(head)))
	w.Write(pre[:])
	w.Write(head)
	binary.Write(w, binary.LittleEndian, CRC(head))
	start := uint64(prefixLen + len(head) + 4)
	pad := align(start) - start
	w.Write(make([]byte, pad))
	written := uint64(0)
	for i, t := range tensors {
		e := h.Tensors[i]
		w.Write(make([]byte, e.Offset-written))
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("write checkpoint %s: %w", path, err)
		}
		written = e.Offset + e.Length
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write checkpoint %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write checkpoint %s: rename: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func align(n uint64) uint64 { return (n + dataAlign - 1) / dataAlign * dataAlign }

// checkEntry verifies that an entry's dtype, shape and length agree.
func checkEntry(e TensorEntry) error {
	size, ok := e.DType.Size()
	if !ok {
		return fmt.Errorf("tensor %s: unknown dtype %q", e.Name, e.DType)
	}
	n, err := e.Numel()
	if err != nil {
		return err
	}
	want := n * uint64(size)
	if e.DType == F16 {
		want = (n + 1) / 2 * 4 // packed two per u32 word
	}
	if e.Length != want {
		return fmt.Errorf("tensor %s: %d bytes for %s shape %v, want %d", e.Name, e.Length, e.DType, e.Shape, want)
	}
	return nil
}
