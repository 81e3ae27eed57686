package step

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/step-gpu/step-gpu/nn/data"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// Data is a prepared corpus: its tokenizer and the train and validation
// token files with their loaders.
type Data struct {
	Tok         *tokenizer.Tokenizer
	Train, Val  *data.Loader
	Description string
	files       []*data.Tokens
}

// Close closes the token files.
func (d *Data) Close() {
	for _, f := range d.files {
		f.Close()
	}
}

// TokenizerPath is where a run keeps its tokenizer.
func TokenizerPath(runDir string) string { return filepath.Join(runDir, "tokenizer.json") }

// PrepareData opens the corpus, loads the run's tokenizer or trains one
// (saving it in the run folder, so every later command uses the same one),
// tokenizes the corpus into cached token files (reused when up to date) and
// returns loaders of (B, T+1) windows. vocab is the BPE vocabulary size
// requested; bytes selects the plain byte tokenizer. progress draws the
// tokenization progress (nil for none).
func PrepareData(spec, runDir string, vocab int, bytes bool, B, T int, shuffle bool, seed uint64,
	log io.Writer, progress func(done, total int64)) (*Data, error) {
	corpus, split, err := OpenCorpus(spec, log)
	if err != nil {
		return nil, err
	}
	return PrepareCorpus(corpus, split, runDir, vocab, bytes, B, T, shuffle, seed, log, progress)
}

// PrepareCorpus is PrepareData for a corpus already opened (OpenCorpus),
// so that a command can check its data before it opens the device and its
// model against the device before it spends time on tokenization.
func PrepareCorpus(corpus *data.Corpus, split *data.Split, runDir string, vocab int, bytes bool, B, T int, shuffle bool,
	seed uint64, log io.Writer, progress func(done, total int64)) (*Data, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	tok, err := loadOrTrainTokenizer(corpus, split, runDir, vocab, bytes, log)
	if err != nil {
		return nil, err
	}
	return Loaders(corpus, split, tok, filepath.Join(runDir, "tokens"), B, T, shuffle, seed, log, progress)
}

// OpenCorpus opens a corpus spec and its deterministic train/validation
// split, saying what the corpus is.
func OpenCorpus(spec string, log io.Writer) (*data.Corpus, *data.Split, error) {
	corpus, err := data.Open(spec)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(log, "data: %s\n", corpus.Description())
	split, err := data.NewSplit(corpus, data.DefaultValFraction)
	if err != nil {
		return nil, nil, err
	}
	return corpus, split, nil
}

// Loaders tokenizes a corpus with tok into cached token files in cacheDir
// and returns the train and validation loaders.
func Loaders(corpus *data.Corpus, split *data.Split, tok *tokenizer.Tokenizer, cacheDir string, B, T int,
	shuffle bool, seed uint64, log io.Writer, progress func(done, total int64)) (*Data, error) {
	cache, err := data.CacheTokens(cacheDir, corpus, split, tok, progress)
	if err != nil {
		return nil, err
	}
	if cache.Reused {
		fmt.Fprintf(log, "data: reusing cached tokens in %s\n", cacheDir)
	}
	d := &Data{Tok: tok}
	open := func(path string) (*data.Tokens, error) {
		t, err := data.OpenTokens(path)
		if err == nil {
			d.files = append(d.files, t)
		}
		return t, err
	}
	trainToks, err := open(cache.Train)
	if err != nil {
		d.Close()
		return nil, err
	}
	valToks, err := open(cache.Val)
	if err != nil {
		d.Close()
		return nil, err
	}
	if d.Train, err = data.NewLoader(trainToks, B, T, data.LoaderOptions{Shuffle: shuffle, Seed: seed}); err != nil {
		d.Close()
		return nil, fmt.Errorf("training data: %w", err)
	}
	if d.Val, err = data.NewLoader(valToks, B, T, data.LoaderOptions{}); err != nil {
		d.Close()
		return nil, fmt.Errorf("validation data (the split's %s): %w; use a larger corpus or a shorter --seq-len", split, err)
	}
	d.Description = fmt.Sprintf("%s; %d train tokens, %d validation tokens, vocab %d",
		corpus.Description(), trainToks.Len(), valToks.Len(), tok.VocabSize())
	fmt.Fprintf(log, "data: %d train tokens (%d windows of %d), %d validation tokens, vocab %d\n",
		trainToks.Len(), d.Train.Windows(), T+1, valToks.Len(), tok.VocabSize())
	return d, nil
}

func loadOrTrainTokenizer(c *data.Corpus, split *data.Split, runDir string, vocab int, bytes bool, log io.Writer) (*tokenizer.Tokenizer, error) {
	path := TokenizerPath(runDir)
	tok, err := tokenizer.Load(path)
	switch {
	case err == nil:
		want := vocab
		if bytes {
			want = tokenizer.Bytes().VocabSize()
		}
		if tok.VocabSize() != want {
			return nil, fmt.Errorf("%s has a vocabulary of %d, this run asks for %d: use another --run-dir or the same vocabulary",
				path, tok.VocabSize(), want)
		}
		fmt.Fprintf(log, "tokenizer: %s (vocab %d)\n", path, tok.VocabSize())
		return tok, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if bytes {
		tok = tokenizer.Bytes()
	} else {
		fmt.Fprintf(log, "tokenizer: training byte-level BPE, vocab %d ...\n", vocab)
		if tok, err = data.TrainTokenizer(c, split, vocab, 0); err != nil {
			return nil, err
		}
	}
	if err := tok.Save(path); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "tokenizer: saved %s (vocab %d)\n", path, tok.VocabSize())
	return tok, nil
}
