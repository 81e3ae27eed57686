package gpu

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProbeStorageTextureRead runs the start-up probe again on a device
// that passed it and checks it leaves nothing allocated. lavapipe offers
// the feature and passes, so CI checks it there.
func TestProbeStorageTextureRead(t *testing.T) {
	d, err := Open(Options{})
	if err != nil {
		if os.Getenv("STEP_GPU_REQUIRE") == "1" {
			t.Fatal(err)
		}
		t.Skipf("no WebGPU adapter: %v", err)
	}
	defer d.Close()
	if d.IsCPU() {
		require.True(t, d.StorageTextureRead, "lavapipe reads rgba32float storage textures: %s", d.StorageTextureNote)
	}
	if !d.StorageTextureRead {
		t.Skipf("%s: %s", d.Info.Name, d.StorageTextureNote)
	}
	before := d.Ledger.Total()
	require.NoError(t, d.probeStorageTextureRead())
	require.Equal(t, before, d.Ledger.Total())
}
