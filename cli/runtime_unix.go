//go:build unix

package cli

import (
	"os"
	"strings"
	"syscall"
)

// prepareRuntime re-executes the binary once with GODEBUG=cgocheck=0 so the
// device-lost callback can be installed (see gpu.LostCallbackSupported).
// If the re-exec fails, step-gpu runs on without the callback.
func prepareRuntime() {
	cur := os.Getenv("GODEBUG")
	if strings.Contains(cur, "cgocheck=0") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	val := "cgocheck=0"
	if cur != "" {
		val = cur + "," + val
	}
	env := append(os.Environ(), "GODEBUG="+val)
	_ = syscall.Exec(exe, os.Args, env)
}
