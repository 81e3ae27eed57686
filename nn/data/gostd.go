package data

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// GoRoot returns the root of the Go installation: runtime.GOROOT() when the
// binary knows it, else the output of `go env GOROOT`.
func GoRoot() (string, error) {
	if root := runtime.GOROOT(); root != "" {
		if _, err := os.Stat(filepath.Join(root, "src")); err == nil {
			return root, nil
		}
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("find GOROOT for the default corpus: binary built without GOROOT and `go env GOROOT` failed (%w); install Go or pass a corpus with --data", err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return "", fmt.Errorf("find GOROOT for the default corpus: `go env GOROOT` printed nothing")
	}
	return root, nil
}

// OpenGoSource opens the default corpus: every .go file under
// GOROOT/src outside any testdata directory, in sorted path order, one
// document per file. Documents are named by their path relative to
// GOROOT/src, so the train/validation split is the same on every machine
// with the same Go version.
func OpenGoSource() (*Corpus, error) {
	root, err := GoRoot()
	if err != nil {
		return nil, err
	}
	src := filepath.Join(root, "src")
	c := &Corpus{kind: fmt.Sprintf("Go %s standard library source (%s)", goVersion(root), src)}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() == 0 {
			c.Skipped++
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		c.Sources = append(c.Sources, Source{
			Path: p, Name: filepath.ToSlash(rel), Format: FormatText,
			Size: info.Size(), ModTime: info.ModTime().UnixNano(), Docs: 1,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list Go source under %s: %w", src, err)
	}
	if len(c.Sources) == 0 {
		return nil, fmt.Errorf("list Go source under %s: no .go files", src)
	}
	// WalkDir visits "net/http/" before "net/http.go"; sort by full path.
	sort.Slice(c.Sources, func(i, j int) bool { return c.Sources[i].Name < c.Sources[j].Name })
	return c, nil
}

// goVersion reads the first line of GOROOT/VERSION, e.g. "go1.26.8".
func goVersion(root string) string {
	b, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return runtime.Version()
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimPrefix(string(bytes.TrimSpace(line)), "go")
}
