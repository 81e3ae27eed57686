package hf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// MaxHeaderBytes bounds the JSON header of a safetensors file that a reader
// will allocate for (the reference implementation's limit).
const MaxHeaderBytes = 100 << 20

// metadataKey is the header entry that holds free-form string metadata.
const metadataKey = "__metadata__"

// dtypeSizes are the bytes per element of every dtype the safetensors format
// defines; Read converts F32, F16 and BF16 and reports the others as
// unsupported.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Tensor is a named float32 tensor to write.
type Tensor struct {
	Name  string
	Shape []int // row-major
	Data  []float32
}

// TensorInfo is one entry of a safetensors header.
type TensorInfo struct {
	Name  string
	DType string
	Shape []int
	// Begin and End are byte offsets into the data section (after the header).
	Begin, End int64
}

// SafeFile is an open safetensors file whose header has been validated.
type SafeFile struct {
	path     string
	f        *os.File
	dataAt   int64
	Metadata map[string]string
	infos    map[string]TensorInfo
}

// headerEntry is a tensor's header entry as JSON.
type headerEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// OpenSafetensors opens a safetensors file and validates its header against
// the file's size before any tensor is read: the header length fits the
// file and MaxHeaderBytes, every entry has a known dtype, a shape whose
// element count times the dtype size equals its byte range, and the byte
// ranges are in bounds, do not overlap and cover the data section exactly.
// Close the file when done.
func OpenSafetensors(path string) (*SafeFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	s, err := readSafeHeader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	s.path, s.f = path, f
	return s, nil
}

// readSafeHeader reads and validates the header of a safetensors stream of
// size bytes.
func readSafeHeader(r io.ReaderAt, size int64) (*SafeFile, error) {
	var prefix [8]byte
	if size < 8 {
		return nil, fmt.Errorf("file of %d bytes is too short for the 8-byte header length", size)
	}
	if _, err := r.ReadAt(prefix[:], 0); err != nil {
		return nil, fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", n, MaxHeaderBytes)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("header length %d exceeds the %d bytes after the length field (truncated file?)", n, size-8)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	s := &SafeFile{dataAt: 8 + int64(n), infos: map[string]TensorInfo{}}
	if err := s.parseHeader(buf, size-s.dataAt); err != nil {
		return nil, err
	}
	return s, nil
}

// parseHeader decodes the JSON header and checks every entry against a data
// section of dataLen bytes.
func (s *SafeFile) parseHeader(buf []byte, dataLen int64) error {
	dec := json.NewDecoder(bytes.NewReader(buf))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("header is not a JSON object")
	}
	var list []TensorInfo
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("header: %w", err)
		}
		name := tok.(string) // object keys are always strings
		if _, dup := s.infos[name]; dup || (name == metadataKey && s.Metadata != nil) {
			return fmt.Errorf("header: %q appears twice", name)
		}
		if name == metadataKey {
			if err := dec.Decode(&s.Metadata); err != nil {
				return fmt.Errorf("header: %s must map strings to strings: %w", metadataKey, err)
			}
			if s.Metadata == nil {
				s.Metadata = map[string]string{}
			}
			continue
		}
		var e headerEntry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("header: tensor %q: %w", name, err)
		}
		info := TensorInfo{Name: name, DType: e.DType, Shape: e.Shape, Begin: e.DataOffsets[0], End: e.DataOffsets[1]}
		if err := checkInfo(info, dataLen); err != nil {
			return fmt.Errorf("header: %w", err)
		}
		s.infos[name] = info
		list = append(list, info)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimRight(rest, " ")) > 0 {
		return fmt.Errorf("header: unexpected bytes after the JSON object")
	}
	// Byte ranges, sorted, must tile the data section with no overlap and no
	// hole, as the format requires.
	sort.Slice(list, func(i, j int) bool {
		if list[i].Begin != list[j].Begin {
			return list[i].Begin < list[j].Begin
		}
		return list[i].End < list[j].End
	})
	at := int64(0)
	for _, t := range list {
		if t.Begin < at {
			return fmt.Errorf("header: tensor %q bytes [%d, %d) overlap the previous tensor's, which end at %d", t.Name, t.Begin, t.End, at)
		}
		if t.Begin > at {
			return fmt.Errorf("header: no tensor covers data bytes [%d, %d)", at, t.Begin)
		}
		at = t.End
	}
	if at != dataLen {
		return fmt.Errorf("header: tensors cover %d data bytes but the file holds %d", at, dataLen)
	}
	return nil
}

// checkInfo validates one header entry against a data section of dataLen bytes.
func checkInfo(t TensorInfo, dataLen int64) error {
	if t.Name == "" {
		return fmt.Errorf("tensor with an empty name")
	}
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	if t.Shape == nil {
		return fmt.Errorf("tensor %q: no shape", t.Name)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt64/int64(size)/int64(d) {
			return fmt.Errorf("tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n *= int64(d)
	}
	if t.Begin < 0 || t.End < t.Begin || t.End > dataLen {
		return fmt.Errorf("tensor %q: data offsets [%d, %d) outside the %d data bytes", t.Name, t.Begin, t.End, dataLen)
	}
	if n*int64(size) != t.End-t.Begin {
		return fmt.Errorf("tensor %q: %s shape %v needs %d bytes but its offsets span %d", t.Name, t.DType, t.Shape, n*int64(size), t.End-t.Begin)
	}
	return nil
}

// Close closes the file.
func (s *SafeFile) Close() error { return s.f.Close() }

// Names returns the tensor names, sorted.
func (s *SafeFile) Names() []string {
	out := make([]string, 0, len(s.infos))
	for n := range s.infos {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info returns the header entry of a tensor.
func (s *SafeFile) Info(name string) (TensorInfo, bool) {
	t, ok := s.infos[name]
	return t, ok
}

// Read returns a tensor's values converted to float32. F32, F16 and BF16
// are supported; other dtypes are an error.
func (s *SafeFile) Read(name string) ([]float32, TensorInfo, error) {
	t, ok := s.infos[name]
	if !ok {
		return nil, t, fmt.Errorf("safetensors %s: no tensor %s", s.path, name)
	}
	if t.DType != "F32" && t.DType != "F16" && t.DType != "BF16" {
		return nil, t, fmt.Errorf("safetensors %s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", s.path, name, t.DType)
	}
	buf := make([]byte, t.End-t.Begin)
	if _, err := s.f.ReadAt(buf, s.dataAt+t.Begin); err != nil {
		return nil, t, fmt.Errorf("safetensors %s: read tensor %s: %w", s.path, name, err)
	}
	return decodeFloats(buf, t.DType), t, nil
}

// decodeFloats converts little-endian F32, F16 or BF16 bytes to float32.
func decodeFloats(b []byte, dtype string) []float32 {
	switch dtype {
	case "F32":
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out
	case "BF16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return out
	case "F16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = halfToFloat(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out
	}
	panic("hf: decodeFloats of " + dtype)
}

// halfToFloat converts an IEEE 754 binary16 value to float32 exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
	case frac == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: frac * 2^-24, exact in float32.
	v := float32(frac) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// WriteSafetensors writes float32 tensors (dtype F32, in the given order)
// and optional string metadata to path in the safetensors format. The file
// is written to a temporary name and renamed into place.
func WriteSafetensors(path string, tensors []Tensor, meta map[string]string) error {
	header := map[string]any{}
	if len(meta) > 0 {
		header[metadataKey] = meta
	}
	off := int64(0)
	for _, t := range tensors {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) || t.Name == "" || t.Name == metadataKey {
			return fmt.Errorf("write safetensors %s: tensor %q has %d values for shape %v", path, t.Name, len(t.Data), t.Shape)
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("write safetensors %s: tensor %q twice", path, t.Name)
		}
		shape := append([]int{}, t.Shape...) // a non-nil slice, so a scalar's shape is [] not null
		header[t.Name] = headerEntry{DType: "F32", Shape: shape, DataOffsets: [2]int64{off, off + 4*int64(n)}}
		off += 4 * int64(n)
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write safetensors %s: %w", path, err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned.
	for (8+len(hb))%8 != 0 {
		hb = append(hb, ' ')
	}
	tmp := path + ".tmp"
	err = writeFile(tmp, func(w *bufio.Writer) error {
		var prefix [8]byte
		binary.LittleEndian.PutUint64(prefix[:], uint64(len(hb)))
		w.Write(prefix[:])
		w.Write(hb)
		var word [4]byte
		for _, t := range tensors {
			for _, x := range t.Data {
				binary.LittleEndian.PutUint32(word[:], math.Float32bits(x))
				if _, err := w.Write(word[:]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write safetensors %s: %w", path, err)
	}
	return nil
}

// writeFile creates path, lets fill write through a buffer, and flushes,
// syncs and closes it, returning the first error.
func writeFile(path string, fill func(w *bufio.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// writeJSON writes v as indented JSON to dir/name.
func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
