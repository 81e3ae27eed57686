package checkpoints

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader: it must never panic, and a
// file it accepts must have every tensor inside the file (so no allocation
// exceeds what the file justifies). The seed corpus is real checkpoints.
func FuzzOpen(f *testing.F) {
	path, h, ts := sample(f)
	if err := Write(path, h, ts); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(Magic))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "fuzz.ckpt")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p)
		if err != nil {
			return
		}
		defer r.Close()
		for _, e := range r.Header.Tensors {
			if e.Length > uint64(len(b)) {
				t.Fatalf("accepted tensor %s of %d bytes in a %d-byte file", e.Name, e.Length, len(b))
			}
		}
		_ = r.Verify()
	})
}
