package checkpoints

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrCorrupt is wrapped by every error about a malformed file.
var ErrCorrupt = errors.New("corrupt checkpoint")

// Reader is an open checkpoint whose header has been verified.
type Reader struct {
	f      *os.File
	path   string
	size   int64
	dataAt uint64
	Header Header
}

// Open opens a checkpoint and verifies its magic, version, header checksum,
// and that every tensor entry is consistent and lies inside the file, all
// before any tensor is read. Close it when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	r, err := open(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("checkpoint %s: %w: %s", path, ErrCorrupt, fmt.Sprintf(format, args...))
}

func open(f *os.File, path string) (*Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	size := st.Size()
	if size < prefixLen+4 {
		return nil, corrupt(path, "%d bytes is too short to be a checkpoint", size)
	}
	var pre [prefixLen]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil {
		return nil, corrupt(path, "read prefix: %v", err)
	}
	if string(pre[:8]) != Magic {
		return nil, corrupt(path, "not a step-gpu checkpoint (bad magic %q)", pre[:8])
	}
	ver := binary.LittleEndian.Uint32(pre[8:])
	if ver > Version {
		return nil, fmt.Errorf("checkpoint %s: format version %d is newer than this step-gpu reads (%d): upgrade step-gpu", path, ver, Version)
	}
	if ver == 0 {
		return nil, corrupt(path, "format version 0")
	}
	hlen := binary.LittleEndian.Uint64(pre[12:])
	if hlen > MaxHeaderBytes || int64(hlen) > size-prefixLen-4 {
		return nil, corrupt(path, "header length %d does not fit the file (%d bytes)", hlen, size)
	}
	head := make([]byte, hlen+4)
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, corrupt(path, "read header: %v", err)
	}
	if got, want := CRC(head[:hlen]), binary.LittleEndian.Uint32(head[hlen:]); got != want {
		return nil, corrupt(path, "header checksum %08x, want %08x", got, want)
	}
	r := &Reader{f: f, path: path, size: size, dataAt: align(prefixLen + hlen + 4)}
	dec := msgpack.NewDecoder(bytes.NewReader(head[:hlen]))
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(&r.Header); err != nil {
		return nil, corrupt(path, "decode header: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range r.Header.Tensors {
		if seen[e.Name] {
			return nil, corrupt(path, "tensor %s listed twice", e.Name)
		}
		seen[e.Name] = true
		if err := checkEntry(e); err != nil {
			return nil, corrupt(path, "%v", err)
		}
		end := r.dataAt + e.Offset + e.Length
		if end < e.Offset || end > uint64(size) {
			return nil, corrupt(path, "tensor %s (%d bytes at %d) extends past the end of the file (%d bytes): truncated?",
				e.Name, e.Length, r.dataAt+e.Offset, size)
		}
	}
	return r, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Path returns the file's path.
func (r *Reader) Path() string { return r.path }

// Read returns the bytes of one tensor after verifying its checksum.
func (r *Reader) Read(name string) ([]byte, TensorEntry, error) {
	e, ok := r.Header.Find(name)
	if !ok {
		return nil, e, fmt.Errorf("checkpoint %s: no tensor %s", r.path, name)
	}
	buf := make([]byte, e.Length)
	if _, err := r.f.ReadAt(buf, int64(r.dataAt+e.Offset)); err != nil {
		return nil, e, corrupt(r.path, "read tensor %s: %v", name, err)
	}
	if got := CRC(buf); got != e.CRC32C {
		return nil, e, corrupt(r.path, "tensor %s checksum %08x, want %08x", name, got, e.CRC32C)
	}
	return buf, e, nil
}

// Verify reads every tensor and checks its checksum.
func (r *Reader) Verify() error {
	for _, e := range r.Header.Tensors {
		if _, _, err := r.Read(e.Name); err != nil {
			return err
		}
	}
	return nil
}
