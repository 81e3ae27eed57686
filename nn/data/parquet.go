package data

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// openParquet opens a Parquet file and finds its "text" column, which must be
// a top-level, non-repeated byte array (string) column.
func openParquet(path string) (*os.File, *parquet.File, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	pf, err := parquet.OpenFile(f, info.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s: not a readable Parquet file (truncated?): %w", path, err)
	}
	col, ok := pf.Schema().Lookup("text")
	if !ok {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s: Parquet file has no \"text\" column", path)
	}
	typ := col.Node.Type()
	lt := typ.LogicalType()
	isString := lt == nil || lt.Value == nil
	if lt != nil {
		switch lt.Value.(type) {
		case *format.StringType, *format.EnumType, *format.JsonType:
			isString = true
		}
	}
	if typ.Kind() != parquet.ByteArray || !isString || col.MaxRepetitionLevel > 0 {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s: Parquet column \"text\" is %s, not a string", path, typ)
	}
	return f, pf, col.ColumnIndex, nil
}

// countParquet checks a Parquet source and returns its number of rows.
func countParquet(path string) (int, error) {
	f, pf, _, err := openParquet(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if pf.NumRows() == 0 {
		return 0, fmt.Errorf("%s: Parquet file has no rows", path)
	}
	return int(pf.NumRows()), nil
}

// eachParquet calls fn for every kept row's "text" value; a null value is an
// empty document, so row i is always document i.
func eachParquet(s Source, done int64, keep func(string, int) bool, fn func(Document) error) error {
	f, pf, col, err := openParquet(s.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	index := 0
	total := pf.NumRows()
	values := make([]parquet.Value, 256)
	for _, rg := range pf.RowGroups() {
		pages := rg.ColumnChunks()[col].Pages()
		for {
			page, err := pages.ReadPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pages.Close()
				return fmt.Errorf("read %s: %w", s.Path, err)
			}
			vr := page.Values()
			for {
				n, err := vr.ReadValues(values)
				for _, v := range values[:n] {
					var text []byte
					if !v.IsNull() {
						text = v.ByteArray()
					}
					index++
					if keep != nil && !keep(s.Name, index-1) {
						continue
					}
					// Progress: the share of rows read, scaled to the file size.
					d := Document{Source: s.Name, Index: index - 1, Text: text, Done: done + s.Size*int64(index)/max(total, 1)}
					if ferr := fn(d); ferr != nil {
						parquet.Release(page)
						pages.Close()
						return ferr
					}
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					parquet.Release(page)
					pages.Close()
					return fmt.Errorf("read %s: %w", s.Path, err)
				}
			}
			parquet.Release(page)
		}
		pages.Close()
	}
	return nil
}
