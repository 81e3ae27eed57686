//go:build !unix

package cli

// prepareRuntime does nothing where exec cannot replace the process; the
// device-lost callback is then not installed (gpu.LostCallbackSupported).
func prepareRuntime() {}
