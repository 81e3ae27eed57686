// Package tokenizer owns step-gpu's byte-level BPE tokenizer: training on a
// corpus sample, fast exact encoding (Decode(Encode(s)) == s for every byte
// string), a plain-bytes tokenizer, saving and loading in step-gpu's own JSON
// format, and export to (and import from) the Hugging Face tokenizer.json
// layout.
//
// Token ids of tokenizers built here: 0..255 are the single bytes, 256 is the
// end-of-document token EOT ("<|endoftext|>"), and merges take 257, 258, ...
// in the order they were learned.
//
// Text is first cut into chunks, and merges never cross a chunk boundary.
// A chunk is, in this order of preference (the Hugging Face regex form is in
// SplitPattern):
//   - an optional space and a run of word bytes (ASCII letters, digits, '_'
//     and every byte >= 0x80, so UTF-8 sequences stay whole);
//   - an optional space and a run of punctuation bytes (anything else that is
//     not whitespace);
//   - a run of whitespace (tab, LF, VT, FF, CR, space); when it is followed
//     by a non-whitespace byte and ends in a space, that last space goes with
//     the next chunk instead (so "\n\treturn x" is "\n\t", "return", " x");
//
// and chunks longer than MaxChunk bytes are cut into MaxChunk-byte pieces.
package tokenizer
