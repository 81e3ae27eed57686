package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// hfAddedToken is an entry of tokenizer.json's "added_tokens".
type hfAddedToken struct {
	ID         uint32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// hfModel is tokenizer.json's "model" for BPE.
type hfModel struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]uint32 `json:"vocab"`
	Merges                  []string          `json:"merges"`
}

// hfFile is the part of the Hugging Face tokenizer.json layout we write.
type hfFile struct {
	Version       string         `json:"version"`
	Truncation    any            `json:"truncation"`
	Padding       any            `json:"padding"`
	AddedTokens   []hfAddedToken `json:"added_tokens"`
	Normalizer    any            `json:"normalizer"`
	PreTokenizer  any            `json:"pre_tokenizer"`
	PostProcessor any            `json:"post_processor"`
	Decoder       any            `json:"decoder"`
	Model         hfModel        `json:"model"`
}

// MarshalHF encodes the tokenizer in the Hugging Face tokenizer.json layout
// of a byte-level BPE: model type "BPE" with the vocabulary and merges in
// GPT-2's byte-to-unicode alphabet, EOT as a special added token, a Split
// pre-tokenizer with SplitPattern followed by a ByteLevel one (without its
// own regex), and a ByteLevel decoder. The Hugging Face library then encodes
// like Encode, except on chunks longer than MaxChunk bytes.
func (t *Tokenizer) MarshalHF() ([]byte, error) {
	f := hfFile{
		Version: "1.0",
		AddedTokens: []hfAddedToken{{
			ID: t.eot, Content: string(t.vocab[t.eot]), Special: true,
		}},
		PreTokenizer: map[string]any{
			"type": "Sequence",
			"pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]string{"Regex": SplitPattern}, "behavior": "Isolated", "invert": false},
				map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
			},
		},
		Decoder: map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		Model: hfModel{
			Type:   "BPE",
			Vocab:  make(map[string]uint32, len(t.vocab)),
			Merges: make([]string, len(t.merges)),
		},
	}
	for id, tok := range t.vocab {
		if uint32(id) == t.eot {
			f.Model.Vocab[string(tok)] = uint32(id)
		} else {
			f.Model.Vocab[byteLevel(tok)] = uint32(id)
		}
	}
	for i, m := range t.merges {
		f.Model.Merges[i] = byteLevel(t.vocab[m.A]) + " " + byteLevel(t.vocab[m.B])
	}
	return json.MarshalIndent(f, "", "  ")
}

// ExportHF writes the tokenizer to path in the Hugging Face tokenizer.json
// layout (see MarshalHF).
func (t *Tokenizer) ExportHF(path string) error {
	b, err := t.MarshalHF()
	if err != nil {
		return fmt.Errorf("export tokenizer %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("export tokenizer: %w", err)
	}
	return nil
}

// UnmarshalHF reads a byte-level BPE tokenizer from the Hugging Face
// tokenizer.json layout, such as one written by MarshalHF or GPT-2's. It
// needs a special added token EOTText (or else one special added token,
// which then serves as end of document). Only the vocabulary and merges are
// read: encoding always uses this package's chunk rule, which may cut text
// differently from the file's own pre-tokenizer.
func UnmarshalHF(data []byte) (*Tokenizer, error) {
	var f struct {
		AddedTokens []hfAddedToken `json:"added_tokens"`
		Model       struct {
			Type   string            `json:"type"`
			Vocab  map[string]uint32 `json:"vocab"`
			Merges json.RawMessage   `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode tokenizer.json: %w", err)
	}
	if f.Model.Type != "BPE" {
		return nil, fmt.Errorf("decode tokenizer.json: model type %q, want \"BPE\"", f.Model.Type)
	}
	var specials []hfAddedToken
	for _, a := range f.AddedTokens {
		if a.Special {
			specials = append(specials, a)
		}
	}
	eot := -1
	for _, a := range specials {
		if a.Content == EOTText {
			eot = int(a.ID)
		}
	}
	if eot < 0 && len(specials) == 1 {
		eot = int(specials[0].ID)
	}
	if eot < 0 {
		return nil, fmt.Errorf("decode tokenizer.json: no special token %q", EOTText)
	}
	n := len(f.Model.Vocab)
	if _, ok := f.Model.Vocab[string(specialContent(specials, eot))]; !ok && eot == n {
		n++ // the special token is only in added_tokens
	}
	vocab := make([][]byte, n)
	for s, id := range f.Model.Vocab {
		if int(id) >= n {
			return nil, fmt.Errorf("decode tokenizer.json: token %q has id %d, beyond a vocabulary of %d", s, id, n)
		}
		if int(id) == eot {
			vocab[id] = []byte(s)
			continue
		}
		b, err := fromByteLevel(s)
		if err != nil {
			return nil, fmt.Errorf("decode tokenizer.json: %w", err)
		}
		vocab[id] = b
	}
	if eot >= n {
		return nil, fmt.Errorf("decode tokenizer.json: special token id %d beyond vocabulary of %d", eot, n)
	}
	vocab[eot] = []byte(specialContent(specials, eot))
	for id, v := range vocab {
		if v == nil {
			return nil, fmt.Errorf("decode tokenizer.json: no token with id %d", id)
		}
	}
	// Merges are either "a b" strings or, in newer files, ["a", "b"] pairs.
	var pairs [][2]string
	var asStrings []string
	if err := json.Unmarshal(f.Model.Merges, &asStrings); err == nil {
		for i, m := range asStrings {
			a, b, ok := strings.Cut(m, " ")
			if !ok {
				return nil, fmt.Errorf("decode tokenizer.json: merge %d %q is not two tokens", i, m)
			}
			pairs = append(pairs, [2]string{a, b})
		}
	} else if err := json.Unmarshal(f.Model.Merges, &pairs); err != nil {
		return nil, fmt.Errorf("decode tokenizer.json: merges: %w", err)
	}
	merges := make([][2]uint32, len(pairs))
	for i, p := range pairs {
		a, okA := f.Model.Vocab[p[0]]
		b, okB := f.Model.Vocab[p[1]]
		if !okA || !okB {
			return nil, fmt.Errorf("decode tokenizer.json: merge %d %q: token not in vocabulary", i, p)
		}
		merges[i] = [2]uint32{a, b}
	}
	t, err := newTokenizer(vocab, uint32(eot), merges)
	if err != nil {
		return nil, fmt.Errorf("decode tokenizer.json: %w", err)
	}
	return t, nil
}

func specialContent(specials []hfAddedToken, id int) string {
	for _, a := range specials {
		if int(a.ID) == id {
			return a.Content
		}
	}
	return EOTText
}

// ImportHF reads a tokenizer.json file (see UnmarshalHF).
func ImportHF(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("import tokenizer: %w", err)
	}
	t, err := UnmarshalHF(b)
	if err != nil {
		return nil, fmt.Errorf("import tokenizer %s: %w", path, err)
	}
	return t, nil
}
