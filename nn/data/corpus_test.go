package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

// docs reads every document of c as "source#index=text".
func docs(t *testing.T, c *Corpus) []string {
	t.Helper()
	var out []string
	require.NoError(t, c.Each(func(d Document) error {
		out = append(out, fmt.Sprintf("%s#%d=%s", d.Source, d.Index, d.Text))
		return nil
	}))
	return out
}

func TestCorpusTextDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.txt"), "bee")
	writeFile(t, filepath.Join(dir, "a.txt"), "ay")
	writeFile(t, filepath.Join(dir, "sub", "c.md"), "sea\n")
	writeFile(t, filepath.Join(dir, "blob.bin"), "\xff\xfe\x00binary")
	writeFile(t, filepath.Join(dir, "empty.txt"), "")
	c, err := Open(dir)
	require.NoError(t, err)
	assert.Equal(t, 2, c.Skipped)
	assert.Equal(t, 3, c.Docs())
	assert.Equal(t, int64(9), c.Bytes())
	a, b, s := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), filepath.Join(dir, "sub", "c.md")
	assert.Equal(t, []string{a + "#0=ay", b + "#0=bee", s + "#0=sea\n"}, docs(t, c))
	assert.Contains(t, c.Description(), "3 files, 3 documents, 9 B, 2 files skipped")

	// A glob (skipping the empty file) and a list; a file named twice is
	// read once.
	c, err = Open(filepath.Join(dir, "*.txt") + ", " + s + "," + a)
	require.NoError(t, err)
	assert.Equal(t, []string{a + "#0=ay", b + "#0=bee", s + "#0=sea\n"}, docs(t, c))
}

func TestCorpusBadInputs(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "blob.dat"), "ok\xffno")
	empty := writeFile(t, filepath.Join(dir, "empty.txt"), "")
	onlyBad := filepath.Join(dir, "bad")
	writeFile(t, filepath.Join(onlyBad, "x.bin"), "\xff")
	blank := writeFile(t, filepath.Join(dir, "blank.jsonl"), "\n \n")
	for name, tc := range map[string]struct{ spec, want string }{
		"missing":         {filepath.Join(dir, "nope.txt"), "no such file"},
		"empty":           {empty, "empty.txt: empty file"},
		"binary":          {bin, "blob.dat: not UTF-8"},
		"glob no match":   {filepath.Join(dir, "*.nothing"), "matches no files"},
		"no documents":    {onlyBad, "no documents found"},
		"only commas":     {" , ", "no documents found"},
		"blank jsonl":     {blank, "no JSON lines"},
		"missing in list": {empty + "x," + bin, "no such file"},
	} {
		_, err := Open(tc.spec)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}

func TestCorpusJSONL(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "web.jsonl"),
		`{"text": "first doc", "id": 1}`+"\n\n"+`{"text":"second\nline","score":0.5}`+"\r\n"+`{"text":"third ünïcode"}`)
	c, err := Open(p)
	require.NoError(t, err)
	assert.Equal(t, 3, c.Docs())
	assert.Equal(t, []string{p + "#0=first doc", p + "#1=second\nline", p + "#2=third ünïcode"}, docs(t, c))

	for name, tc := range map[string]struct{ content, want string }{
		"malformed": {`{"text":"a"}` + "\n" + `{"text": "b"` + "\n", "bad.jsonl:2: malformed JSON line"},
		"no text":   {`{"text":"a"}` + "\n\n" + `{"body":"b"}`, "bad.jsonl:3: no string field \"text\""},
		"not text":  {`{"text":7}`, "bad.jsonl:1: malformed JSON line"},
	} {
		bad := writeFile(t, filepath.Join(t.TempDir(), "bad.jsonl"), tc.content)
		c, err := Open(bad)
		if err == nil { // Open checks only that every line is braced
			err = c.Each(func(Document) error { return nil })
		}
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}

type webRow struct {
	ID   int64  `parquet:"id"`
	Text string `parquet:"text"`
}

func writeParquet[T any](t *testing.T, path string, rows []T, opts ...parquet.WriterOption) string {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[T](f, opts...)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

func TestCorpusParquet(t *testing.T) {
	dir := t.TempDir()
	var rows []webRow
	var want []string
	p := filepath.Join(dir, "train-00000.parquet")
	for i := range 1000 {
		rows = append(rows, webRow{ID: int64(i), Text: fmt.Sprintf("document %d %s", i, strings.Repeat("x", i%7))})
		want = append(want, fmt.Sprintf("%s#%d=%s", p, i, rows[i].Text))
	}
	// Small pages and row groups so reading crosses page and group edges.
	writeParquet(t, p, rows, parquet.PageBufferSize(512), parquet.MaxRowsPerRowGroup(300))
	c, err := Open(dir)
	require.NoError(t, err)
	assert.Equal(t, 1000, c.Docs())
	assert.Equal(t, want, docs(t, c))

	// Dictionary-encoded and compressed, as pyarrow writes FineWeb-Edu.
	type dictRow struct {
		Text string `parquet:"text,dict,zstd"`
	}
	dict := writeParquet(t, filepath.Join(dir, "dict.parquet"), []dictRow{{"same"}, {"other"}, {"same"}})
	c, err = Open(dict)
	require.NoError(t, err)
	assert.Equal(t, []string{dict + "#0=same", dict + "#1=other", dict + "#2=same"}, docs(t, c))

	// A nullable text column: a null is an empty document.
	type optRow struct {
		Text *string `parquet:"text,optional"`
	}
	s := "kept"
	opt := writeParquet(t, filepath.Join(dir, "opt.parquet"), []optRow{{&s}, {nil}, {&s}})
	c, err = Open(opt)
	require.NoError(t, err)
	assert.Equal(t, []string{opt + "#0=kept", opt + "#1=", opt + "#2=kept"}, docs(t, c))

	type noText struct {
		Body string `parquet:"body"`
	}
	type intText struct {
		Text int64 `parquet:"text"`
	}
	noTextPath := writeParquet(t, filepath.Join(dir, "notext.parquet"), []noText{{"a"}})
	intPath := writeParquet(t, filepath.Join(dir, "int.parquet"), []intText{{1}})
	full, err := os.ReadFile(p)
	require.NoError(t, err)
	trunc := writeFile(t, filepath.Join(dir, "trunc.parquet"), string(full[:len(full)/2]))
	garbage := writeFile(t, filepath.Join(dir, "garbage.parquet"), "PAR1 this is not parquet")
	for spec, want := range map[string]string{
		noTextPath: "no \"text\" column",
		intPath:    "not a string",
		trunc:      "trunc.parquet: not a readable Parquet file",
		garbage:    "garbage.parquet: not a readable Parquet file",
	} {
		_, err := Open(spec)
		require.Error(t, err, spec)
		assert.Contains(t, err.Error(), want, spec)
	}
}

func TestCorpusGoSource(t *testing.T) {
	c, err := OpenGoSource()
	require.NoError(t, err)
	assert.Greater(t, len(c.Sources), 1000)
	assert.Contains(t, c.Description(), "standard library source")
	for i, s := range c.Sources {
		require.True(t, strings.HasSuffix(s.Name, ".go"), s.Name)
		require.NotContains(t, "/"+s.Name, "/testdata/")
		if i > 0 {
			require.Less(t, c.Sources[i-1].Name, s.Name)
		}
	}
	same, err := Open("")
	require.NoError(t, err)
	assert.Equal(t, c.Fingerprint(), same.Fingerprint())
	t.Log(c.Description())

	// Read a small sample only.
	c.Sources = c.Sources[:20]
	n := 0
	require.NoError(t, c.Each(func(d Document) error {
		n++
		assert.NotEmpty(t, d.Text)
		return nil
	}))
	assert.Equal(t, 20, n)
}
