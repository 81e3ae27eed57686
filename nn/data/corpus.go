package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Format is the layout of one corpus source file.
type Format int

const (
	// FormatText is a plain UTF-8 text file holding one document.
	FormatText Format = iota
	// FormatJSONL is a file of JSON objects, one per line, each with a
	// string field "text" holding one document (FineWeb-Edu's JSONL layout).
	FormatJSONL
	// FormatParquet is a Parquet file with a string column "text", one
	// document per row (FineWeb-Edu's own format).
	FormatParquet
)

// String returns the lower-case name of the format.
func (f Format) String() string {
	switch f {
	case FormatText:
		return "text"
	case FormatJSONL:
		return "jsonl"
	case FormatParquet:
		return "parquet"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// formatOf picks a format from a file name's extension.
func formatOf(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return FormatJSONL
	case ".parquet":
		return FormatParquet
	}
	return FormatText
}

// Source is one file of a corpus.
type Source struct {
	// Path is where the file is read from.
	Path string
	// Name is the file's identity in document identities: the path relative
	// to GOROOT/src for the default corpus (so the split does not depend on
	// where Go is installed), the cleaned path otherwise.
	Name string
	// Format is the file's layout.
	Format Format
	// Size is the file's size in bytes and ModTime its modification time in
	// Unix nanoseconds; both go into the corpus fingerprint.
	Size    int64
	ModTime int64
	// Docs is the number of documents in the file.
	Docs int
}

// Corpus is an ordered list of sources. It holds no document text: every
// pass reads the files again, one at a time.
type Corpus struct {
	// Spec is the specification the corpus was opened from ("" for the
	// default corpus).
	Spec string
	// Sources are the files in iteration order.
	Sources []Source
	// Skipped counts files found in directories and left out because they
	// were empty or not valid UTF-8.
	Skipped int

	kind string
}

// Docs returns the number of documents in the corpus.
func (c *Corpus) Docs() int {
	n := 0
	for _, s := range c.Sources {
		n += s.Docs
	}
	return n
}

// Bytes returns the total size of the corpus files on disk.
func (c *Corpus) Bytes() int64 {
	var n int64
	for _, s := range c.Sources {
		n += s.Size
	}
	return n
}

// Description returns a one-line summary for the trainer to print, such as
// "Go 1.26.8 standard library source (/usr/local/go/src): 6495 files, 6495
// documents, 87.7 MB".
func (c *Corpus) Description() string {
	s := fmt.Sprintf("%s: %d files, %d documents, %s", c.kind, len(c.Sources), c.Docs(), humanBytes(c.Bytes()))
	if c.Skipped > 0 {
		s += fmt.Sprintf(", %d files skipped (empty or not UTF-8)", c.Skipped)
	}
	return s
}

// Fingerprint returns a string that changes whenever the corpus content may
// have changed: every source's name, format, size and modification time.
func (c *Corpus) Fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "corpus %q\n", c.kind)
	for _, s := range c.Sources {
		fmt.Fprintf(&b, "%s\t%s\t%d\t%d\t%d\n", s.Name, s.Format, s.Size, s.ModTime, s.Docs)
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Open opens a corpus. spec is "" for the default corpus (the Go standard
// library source, see OpenGoSource), or a comma-separated list of files,
// directories and glob patterns. Files named *.jsonl or *.ndjson are read as
// JSONL, *.parquet as Parquet, anything else as one UTF-8 text document.
// A file named explicitly must exist, be non-empty and (for text) be valid
// UTF-8; files found in directories or by globs that are empty or not valid
// UTF-8 text are skipped and counted. Open checks every source (it counts JSONL lines
// and reads Parquet footers) so later passes only fail on I/O errors or
// malformed JSONL lines.
func Open(spec string) (*Corpus, error) {
	if strings.TrimSpace(spec) == "" {
		return OpenGoSource()
	}
	c := &Corpus{Spec: spec, kind: "corpus " + spec}
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if err := c.addSpec(part, seen); err != nil {
			return nil, fmt.Errorf("open corpus %q: %w", spec, err)
		}
	}
	if len(c.Sources) == 0 {
		return nil, fmt.Errorf("open corpus %q: no documents found", spec)
	}
	if c.Docs() == 0 {
		return nil, fmt.Errorf("open corpus %q: the corpus holds no documents", spec)
	}
	return c, nil
}

func (c *Corpus) addSpec(part string, seen map[string]bool) error {
	if strings.ContainsAny(part, "*?[") {
		matches, err := filepath.Glob(part)
		if err != nil {
			return fmt.Errorf("glob %q: %w", part, err)
		}
		if len(matches) == 0 {
			return fmt.Errorf("glob %q matches no files", part)
		}
		sort.Strings(matches)
		for _, m := range matches {
			// Like a directory's files, glob matches that are empty or
			// not UTF-8 text are skipped rather than fatal.
			if err := c.addPath(m, seen, false); err != nil {
				return err
			}
		}
		return nil
	}
	return c.addPath(part, seen, true)
}

// addPath adds a file or (recursively) a directory. explicit is true for a
// file named by the user (directly or by a glob): such a file must be good.
func (c *Corpus) addPath(path string, seen map[string]bool, explicit bool) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		var files []string
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("walk %s: %w", path, err)
		}
		sort.Strings(files)
		for _, f := range files {
			if err := c.addPath(f, seen, false); err != nil {
				return err
			}
		}
		return nil
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	clean := filepath.Clean(path)
	if seen[clean] {
		return nil
	}
	seen[clean] = true
	s := Source{Path: path, Name: clean, Format: formatOf(path), Size: info.Size(), ModTime: info.ModTime().UnixNano()}
	if s.Size == 0 {
		if explicit {
			return fmt.Errorf("%s: empty file", path)
		}
		c.Skipped++
		return nil
	}
	switch s.Format {
	case FormatText:
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !utf8.Valid(text) {
			if explicit {
				return fmt.Errorf("%s: %s", path, invalidText(text))
			}
			c.Skipped++
			return nil
		}
		s.Docs = 1
	case FormatJSONL:
		n, err := countJSONL(path)
		if err != nil {
			return err
		}
		s.Docs = n
	case FormatParquet:
		n, err := countParquet(path)
		if err != nil {
			return err
		}
		s.Docs = n
	}
	c.Sources = append(c.Sources, s)
	return nil
}

// Document is one document of a corpus, as handed out by Each.
type Document struct {
	// Source is the name of the file holding the document and Index its
	// position in that file; together they are the document's identity.
	Source string
	Index  int
	// Text is the document's content. It is only valid during the callback.
	Text []byte
	// Done is how many corpus bytes (on disk) have been read so far,
	// for progress reports against Corpus.Bytes.
	Done int64
}

// errStop ends an Each pass early without an error.
var errStop = errors.New("stop")

// Each calls fn for every document in order. It stops at the first error,
// from reading or from fn, and returns it.
func (c *Corpus) Each(fn func(Document) error) error {
	return c.EachWhere(nil, fn)
}

// EachWhere is Each for the documents that keep accepts. keep is called once
// per document identity, in order, before the document is read (a text file
// that is not kept is not read at all); nil keeps everything.
func (c *Corpus) EachWhere(keep func(source string, index int) bool, fn func(Document) error) error {
	var done int64
	for _, s := range c.Sources {
		var err error
		switch s.Format {
		case FormatText:
			if keep == nil || keep(s.Name, 0) {
				var text []byte
				text, err = os.ReadFile(s.Path)
				if err == nil {
					err = fn(Document{Source: s.Name, Text: text, Done: done + s.Size})
				}
			}
		case FormatJSONL:
			err = eachJSONL(s, done, keep, fn)
		case FormatParquet:
			err = eachParquet(s, done, keep, fn)
		}
		if err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
		done += s.Size
	}
	return nil
}

// invalidText says how a file that is not valid UTF-8 is broken: cut in the
// middle of its last character (truncated), or binary.
func invalidText(text []byte) string {
	for cut := 1; cut <= utf8.UTFMax-1 && cut < len(text); cut++ {
		if utf8.Valid(text[:len(text)-cut]) {
			return fmt.Sprintf("not UTF-8 text: it ends inside a character at byte %d (truncated?)", len(text))
		}
	}
	return "not UTF-8 text (binary file?)"
}
