package data

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
)

// Tokens is an open token file. Tokens are read from disk on demand, so a
// file far larger than memory (a FineWeb-Edu sample) costs nothing to open.
type Tokens struct {
	// Path is the file the tokens are read from.
	Path string
	// Vocab is the vocabulary size V the tokens were encoded with.
	Vocab int
	// Docs is the number of documents in the file.
	Docs int64

	f     *os.File
	width int
	count int64
	buf   []byte
}

// OpenTokens opens a token file written by CacheTokens and checks its
// header and size.
func OpenTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open tokens: %w", err)
	}
	h, err := readTokenHeader(f)
	if err == nil {
		var info os.FileInfo
		if info, err = f.Stat(); err == nil {
			if want := tokenHeaderSize + int64(h.Count)*int64(h.Width); info.Size() != want {
				err = fmt.Errorf("%d bytes, header promises %d (truncated?)", info.Size(), want)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open tokens %s: %w", path, err)
	}
	return &Tokens{Path: path, Vocab: int(h.Vocab), Docs: int64(h.Docs), f: f, width: int(h.Width), count: int64(h.Count)}, nil
}

// Close closes the file.
func (t *Tokens) Close() error { return t.f.Close() }

// Len returns the number of tokens.
func (t *Tokens) Len() int64 { return t.count }

// Read appends the n tokens starting at token start to dst and returns it.
// Tokens is not safe for concurrent use.
func (t *Tokens) Read(dst []uint32, start, n int64) ([]uint32, error) {
	if start < 0 || n < 0 || start+n > t.count {
		return dst, fmt.Errorf("read tokens %s: [%d, %d) outside [0, %d)", t.Path, start, start+n, t.count)
	}
	size := int(n) * t.width
	if cap(t.buf) < size {
		t.buf = make([]byte, size)
	}
	b := t.buf[:size]
	if _, err := t.f.ReadAt(b, tokenHeaderSize+start*int64(t.width)); err != nil {
		return dst, fmt.Errorf("read tokens %s: %w", t.Path, err)
	}
	if t.width == 2 {
		for i := 0; i < size; i += 2 {
			dst = append(dst, uint32(binary.LittleEndian.Uint16(b[i:])))
		}
	} else {
		for i := 0; i < size; i += 4 {
			dst = append(dst, binary.LittleEndian.Uint32(b[i:]))
		}
	}
	return dst, nil
}

// LoaderOptions configure a Loader.
type LoaderOptions struct {
	// Shuffle visits the windows of each epoch in a random order drawn from
	// Seed and the epoch number; otherwise windows come in file order.
	Shuffle bool
	Seed    uint64
}

// Loader serves batches of (B, T+1) token windows: row b holds T+1
// consecutive tokens (inputs are the first T, targets the last T). Window w
// starts at token w*T, so the file holds (Len-1)/T windows per epoch. The
// loader's whole state is its cursor, the number of windows served so far:
// a checkpoint saves Cursor and resume calls SetCursor to continue with
// exactly the windows an uninterrupted run would have seen.
type Loader struct {
	toks    *Tokens
	B, T    int
	opt     LoaderOptions
	windows int64
	cursor  int64
	perm    []int
	epoch   int64 // of perm, -1 if none
}

// NewLoader returns a loader over toks with batches of B windows of T+1
// tokens. The file must hold at least one window.
func NewLoader(toks *Tokens, B, T int, opt LoaderOptions) (*Loader, error) {
	if B < 1 || T < 1 {
		return nil, fmt.Errorf("new loader: B=%d, T=%d: both must be at least 1", B, T)
	}
	n := (toks.Len() - 1) / int64(T)
	if n < 1 {
		return nil, fmt.Errorf("new loader: %s holds %d tokens, fewer than one window of T+1=%d", toks.Path, toks.Len(), T+1)
	}
	return &Loader{toks: toks, B: B, T: T, opt: opt, windows: n, epoch: -1}, nil
}

// Windows returns the number of windows per epoch.
func (l *Loader) Windows() int64 { return l.windows }

// Batches returns the number of whole batches in one epoch, at least 1 (a
// validation pass of Batches batches covers every window once when the
// windows divide into batches, with Reset before each pass).
func (l *Loader) Batches() int64 { return max(1, l.windows/int64(l.B)) }

// Cursor returns the number of windows served so far.
func (l *Loader) Cursor() int64 { return l.cursor }

// Epoch returns the epoch of the next window.
func (l *Loader) Epoch() int64 { return l.cursor / l.windows }

// SetCursor moves the loader to a cursor saved by Cursor.
func (l *Loader) SetCursor(c int64) error {
	if c < 0 {
		return fmt.Errorf("set loader cursor %d: negative", c)
	}
	l.cursor = c
	return nil
}

// Reset moves the loader back to the first window (validation passes).
func (l *Loader) Reset() { l.cursor = 0 }

// window returns the index of the window at position pos of the sequence.
func (l *Loader) window(pos int64) int64 {
	e, i := pos/l.windows, pos%l.windows
	if !l.opt.Shuffle {
		return i
	}
	if e != l.epoch {
		l.perm = rand.New(rand.NewPCG(l.opt.Seed, uint64(e))).Perm(int(l.windows))
		l.epoch = e
	}
	return int64(l.perm[i])
}

// Next appends the next batch, B*(T+1) tokens in row-major (B, T+1) order,
// to dst and returns it. On a read error the cursor does not move.
func (l *Loader) Next(dst []uint32) ([]uint32, error) {
	cursor := l.cursor
	for range l.B {
		var err error
		dst, err = l.toks.Read(dst, l.window(cursor)*int64(l.T), int64(l.T)+1)
		if err != nil {
			return dst, err
		}
		cursor++
	}
	l.cursor = cursor
	return dst, nil
}
