// Package checkpoints reads and writes step-gpu's checkpoint files: a magic
// number and format version, a msgpack header (run state, growth history and
// a table of tensors with dtype, shape, byte range and CRC-32C), then the
// tensor bytes. It depends on no GPU code: the model config travels as raw
// msgpack that package nn decodes and checks.
//
// Files are written atomically (temporary file, fsync, rename, fsync of the
// directory), so a crash at any moment leaves the previous checkpoint intact.
// Readers verify sizes before allocating and checksums before returning data,
// and reject newer format versions and unknown header fields with an error
// rather than guessing.
package checkpoints
