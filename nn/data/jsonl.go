package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// maxJSONLLine bounds one JSONL line (one document), far above any web page.
const maxJSONLLine = 256 << 20

// jsonlLines calls fn with every non-blank line of a JSONL file and its
// 1-based line number; off is the byte offset just past the line.
func jsonlLines(path string, fn func(line []byte, lineNo int, off int64) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than the buffer: gather it in a copy.
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull && len(long) <= maxJSONLLine {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			if len(long) > maxJSONLLine {
				return fmt.Errorf("%s:%d: line longer than %d bytes", path, lineNo, maxJSONLLine)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", path, err)
		}
		off += int64(len(line))
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if ferr := fn(t, lineNo, off); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// countJSONL returns the number of documents (non-blank lines) in a JSONL
// file. It checks that every line is braced like a JSON object, which is
// cheap and catches a truncated last line or a binary file as soon as the
// corpus opens; the full decode, when the documents are read, catches the
// rest with the file and line.
func countJSONL(path string) (int, error) {
	n := 0
	err := jsonlLines(path, func(line []byte, lineNo int, _ int64) error {
		if line[0] != '{' || line[len(line)-1] != '}' {
			return fmt.Errorf("%s:%d: malformed JSON line: not a JSON object (truncated or binary file?)", path, lineNo)
		}
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no JSON lines", path)
	}
	return n, nil
}

// jsonlDoc is the part of a JSONL record we read.
type jsonlDoc struct {
	Text *string `json:"text"`
}

// eachJSONL calls fn for every kept document of a JSONL source; a line that is not
// a JSON object with a string "text" field is an error naming file and line.
func eachJSONL(s Source, done int64, keep func(string, int) bool, fn func(Document) error) error {
	index := 0
	return jsonlLines(s.Path, func(line []byte, lineNo int, off int64) error {
		if keep != nil && !keep(s.Name, index) {
			index++
			return nil
		}
		var d jsonlDoc
		if err := json.Unmarshal(line, &d); err != nil {
			return fmt.Errorf("%s:%d: malformed JSON line: %w", s.Path, lineNo, err)
		}
		if d.Text == nil {
			return fmt.Errorf("%s:%d: no string field \"text\"", s.Path, lineNo)
		}
		err := fn(Document{Source: s.Name, Index: index, Text: []byte(*d.Text), Done: done + off})
		index++
		return err
	})
}
