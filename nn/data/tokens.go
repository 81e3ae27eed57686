package data

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// Token file layout (little-endian): a 72-byte header, then Count tokens of
// Width bytes each (uint16 when V <= 65536, else uint32).
//
//	offset size field
//	0      8    magic "STEPTOK\x00"
//	8      4    version (1)
//	12     4    width in bytes (2 or 4)
//	16     4    vocabulary size V
//	20     4    reserved (0)
//	24     8    token count
//	32     8    document count
//	40     32   key: SHA-256 of the corpus fingerprint, the split, the part
//	            ("train" or "val") and the tokenizer, so a stale file is
//	            detected and rebuilt
//
// The token stream of a part is every document's tokens followed by EOT, in
// corpus order.
const (
	tokenMagic      = "STEPTOK\x00"
	tokenVersion    = 1
	tokenHeaderSize = 72
)

// tokenHeader is a token file's header.
type tokenHeader struct {
	Width, Vocab uint32
	Count, Docs  uint64
	Key          [32]byte
}

func (h *tokenHeader) marshal() []byte {
	b := make([]byte, tokenHeaderSize)
	copy(b, tokenMagic)
	binary.LittleEndian.PutUint32(b[8:], tokenVersion)
	binary.LittleEndian.PutUint32(b[12:], h.Width)
	binary.LittleEndian.PutUint32(b[16:], h.Vocab)
	binary.LittleEndian.PutUint64(b[24:], h.Count)
	binary.LittleEndian.PutUint64(b[32:], h.Docs)
	copy(b[40:], h.Key[:])
	return b
}

func readTokenHeader(r io.Reader) (tokenHeader, error) {
	var h tokenHeader
	b := make([]byte, tokenHeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return h, fmt.Errorf("read header: %w", err)
	}
	if string(b[:8]) != tokenMagic {
		return h, errors.New("not a step-gpu token file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != tokenVersion {
		return h, fmt.Errorf("token file version %d, want %d", v, tokenVersion)
	}
	h.Width = binary.LittleEndian.Uint32(b[12:])
	h.Vocab = binary.LittleEndian.Uint32(b[16:])
	h.Count = binary.LittleEndian.Uint64(b[24:])
	h.Docs = binary.LittleEndian.Uint64(b[32:])
	copy(h.Key[:], b[40:])
	if h.Width != 2 && h.Width != 4 {
		return h, fmt.Errorf("token width %d, want 2 or 4", h.Width)
	}
	return h, nil
}

// tokenWidth is the bytes per token for a vocabulary of size vocab.
func tokenWidth(vocab int) uint32 {
	if vocab <= 1<<16 {
		return 2
	}
	return 4
}

// cacheKey identifies the content of one part's token file.
func cacheKey(c *Corpus, split *Split, part string, tok *tokenizer.Tokenizer) ([32]byte, error) {
	tj, err := tok.MarshalJSON()
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "step-gpu tokens v%d\n%s\n%s\n%s\n", tokenVersion, c.Fingerprint(), split, part)
	h.Write(tj)
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k, nil
}

// TokenCache names the two token files of a corpus.
type TokenCache struct {
	// Train and Val are the paths of the train and validation token files.
	Train, Val string
	// Reused is true when both files were up to date and nothing was built.
	Reused bool
}

// CacheTokens makes sure dir holds train.tok and val.tok, the tokenization
// of the train and validation splits of c with tok, and returns their paths.
// Files whose header key matches are reused; otherwise both are rebuilt in
// one pass over the corpus (encoding on all CPUs) and written atomically.
// progress, if not nil, is called with the corpus bytes read so far and
// Corpus.Bytes.
func CacheTokens(dir string, c *Corpus, split *Split, tok *tokenizer.Tokenizer, progress func(done, total int64)) (*TokenCache, error) {
	tc := &TokenCache{Train: filepath.Join(dir, "train.tok"), Val: filepath.Join(dir, "val.tok")}
	trainKey, err := cacheKey(c, split, "train", tok)
	if err != nil {
		return nil, fmt.Errorf("cache tokens: %w", err)
	}
	valKey, err := cacheKey(c, split, "val", tok)
	if err != nil {
		return nil, fmt.Errorf("cache tokens: %w", err)
	}
	if keyMatches(tc.Train, trainKey) && keyMatches(tc.Val, valKey) {
		tc.Reused = true
		return tc, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache tokens: %w", err)
	}
	width := tokenWidth(tok.VocabSize())
	train, err := newTokenWriter(tc.Train, tokenHeader{Width: width, Vocab: uint32(tok.VocabSize()), Key: trainKey})
	if err != nil {
		return nil, fmt.Errorf("cache tokens: %w", err)
	}
	defer train.abort()
	val, err := newTokenWriter(tc.Val, tokenHeader{Width: width, Vocab: uint32(tok.VocabSize()), Key: valKey})
	if err != nil {
		return nil, fmt.Errorf("cache tokens: %w", err)
	}
	defer val.abort()
	eot := []uint32{tok.EOT()}
	err = encodeCorpus(c, tok, func(d Document, toks []uint32) error {
		w := train
		if split.IsVal(d.Source, d.Index) {
			w = val
		}
		w.hdr.Docs++
		if err := w.write(toks); err != nil {
			return err
		}
		if err := w.write(eot); err != nil {
			return err
		}
		if progress != nil {
			progress(d.Done, c.Bytes())
		}
		return nil
	})
	if err == nil {
		err = train.commit()
	}
	if err == nil {
		err = val.commit()
	}
	if err != nil {
		return nil, fmt.Errorf("cache tokens in %s: %w", dir, err)
	}
	return tc, nil
}

// keyMatches reports whether path is a readable token file with key k and
// the size its header promises.
func keyMatches(path string, k [32]byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h, err := readTokenHeader(f)
	if err != nil || h.Key != k {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Size() == tokenHeaderSize+int64(h.Count)*int64(h.Width)
}

// encodeJob is one document on its way through the encoding workers.
type encodeJob struct {
	doc   Document
	toks  []uint32
	ready chan struct{}
}

// encodeCorpus encodes every document of c on all CPUs and calls fn with
// each document and its tokens in corpus order. Document.Text is nil in fn.
func encodeCorpus(c *Corpus, tok *tokenizer.Tokenizer, fn func(Document, []uint32) error) error {
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *encodeJob, 4*workers)
	ordered := make(chan *encodeJob, 64*workers)
	quit := make(chan struct{})
	for range workers {
		go func() {
			for j := range jobs {
				j.toks = tok.Encode(make([]uint32, 0, len(j.doc.Text)/3), j.doc.Text)
				j.doc.Text = nil
				close(j.ready)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(jobs)
		readErr <- c.Each(func(d Document) error {
			d.Text = bytes.Clone(d.Text)
			j := &encodeJob{doc: d, ready: make(chan struct{})}
			select {
			case ordered <- j:
			case <-quit:
				return errStop
			}
			jobs <- j
			return nil
		})
	}()
	var err error
	for j := range ordered {
		<-j.ready
		if err = fn(j.doc, j.toks); err != nil {
			close(quit)
			for j := range ordered { // let the reader and workers finish
				<-j.ready
			}
			break
		}
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

// tokenWriter writes one token file to a temporary file and renames it into
// place on commit.
type tokenWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	hdr  tokenHeader
	buf  []byte
}

func newTokenWriter(path string, hdr tokenHeader) (*tokenWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	tw := &tokenWriter{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), hdr: hdr}
	if _, err := tw.w.Write(hdr.marshal()); err != nil {
		tw.abort()
		return nil, err
	}
	return tw, nil
}

func (tw *tokenWriter) write(toks []uint32) error {
	tw.buf = tw.buf[:0]
	for _, t := range toks {
		if tw.hdr.Width == 2 {
			tw.buf = binary.LittleEndian.AppendUint16(tw.buf, uint16(t))
		} else {
			tw.buf = binary.LittleEndian.AppendUint32(tw.buf, t)
		}
	}
	tw.hdr.Count += uint64(len(toks))
	_, err := tw.w.Write(tw.buf)
	return err
}

// commit writes the final header, syncs and renames the file into place.
func (tw *tokenWriter) commit() error {
	if err := tw.w.Flush(); err != nil {
		return err
	}
	if _, err := tw.f.WriteAt(tw.hdr.marshal(), 0); err != nil {
		return err
	}
	if err := tw.f.Sync(); err != nil {
		return err
	}
	if err := tw.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tw.f.Name(), tw.path); err != nil {
		return err
	}
	tw.f = nil
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(filepath.Dir(tw.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// abort removes the temporary file unless commit succeeded.
func (tw *tokenWriter) abort() {
	if tw.f != nil {
		tw.f.Close()
		os.Remove(tw.f.Name())
		tw.f = nil
	}
}
