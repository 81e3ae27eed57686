package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
)

// FileFormat names step-gpu's tokenizer file format.
const FileFormat = "step-gpu-bpe"

// FileVersion is the version of the tokenizer file format.
const FileVersion = 1

// file is step-gpu's tokenizer file, a JSON object:
//
//	{
//	  "format": "step-gpu-bpe",
//	  "version": 1,
//	  "eot": 256,
//	  "vocab": ["\u0100", "\u0101", ..., "<|endoftext|>", "Ġt", ...],
//	  "merges": [[71, 116], ...]
//	}
//
// vocab[id] is token id's bytes written with GPT-2's byte-to-unicode mapping
// (see byteRune), except vocab[eot], which is the end-of-document token's
// text. merges are pairs of token ids in rank order (first learned first);
// each merge produces the token whose bytes are the concatenation of the
// pair's bytes.
type file struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	EOT     uint32      `json:"eot"`
	Vocab   []string    `json:"vocab"`
	Merges  [][2]uint32 `json:"merges"`
}

// MarshalJSON encodes the tokenizer in step-gpu's tokenizer file format.
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	f := file{Format: FileFormat, Version: FileVersion, EOT: t.eot, Vocab: make([]string, len(t.vocab)), Merges: make([][2]uint32, len(t.merges))}
	for id, tok := range t.vocab {
		if uint32(id) == t.eot {
			f.Vocab[id] = string(tok)
		} else {
			f.Vocab[id] = byteLevel(tok)
		}
	}
	for i, m := range t.merges {
		f.Merges[i] = [2]uint32{m.A, m.B}
	}
	return json.Marshal(f)
}

// Unmarshal decodes a tokenizer from step-gpu's tokenizer file format.
func Unmarshal(data []byte) (*Tokenizer, error) {
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode tokenizer: %w", err)
	}
	if f.Format != FileFormat {
		return nil, fmt.Errorf("decode tokenizer: format %q, want %q", f.Format, FileFormat)
	}
	if f.Version != FileVersion {
		return nil, fmt.Errorf("decode tokenizer: version %d, want %d", f.Version, FileVersion)
	}
	vocab := make([][]byte, len(f.Vocab))
	for id, s := range f.Vocab {
		if uint32(id) == f.EOT {
			vocab[id] = []byte(s)
			continue
		}
		b, err := fromByteLevel(s)
		if err != nil {
			return nil, fmt.Errorf("decode tokenizer: token %d: %w", id, err)
		}
		vocab[id] = b
	}
	t, err := newTokenizer(vocab, f.EOT, f.Merges)
	if err != nil {
		return nil, fmt.Errorf("decode tokenizer: %w", err)
	}
	return t, nil
}

// Save writes the tokenizer to path in step-gpu's tokenizer file format.
func (t *Tokenizer) Save(path string) error {
	b, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("save tokenizer %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("save tokenizer: %w", err)
	}
	return nil
}

// Load reads a tokenizer saved by Save.
func Load(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	return t, nil
}
