package checkpoints

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// killWriterEnv makes the test binary act as a checkpoint writer that
// rewrites one path forever, each file a little different.
const killWriterEnv = "STEP_GPU_KILL_WRITER"

// TestMain lets the test binary double as the writer process.
func TestMain(m *testing.M) {
	if path := os.Getenv(killWriterEnv); path != "" {
		writeForever(path)
		return
	}
	os.Exit(m.Run())
}

func writeForever(path string) {
	data := make([]byte, 4<<20) // 4 MiB tensors: a write spans many syscalls
	for i := 0; ; i++ {
		for j := range 64 {
			data[j] = byte(i + j)
		}
		h := Header{Step: i}
		ts := []Tensor{{Name: "a", DType: U8, Shape: []int{len(data)}, Group: Other, Data: data},
			{Name: "b", DType: U8, Shape: []int{len(data)}, Group: Other, Data: data}}
		if err := Write(path, h, ts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// TestKillDuringWrite starts a writer that rewrites a checkpoint in a loop,
// kills it with SIGKILL at random moments, and checks after each kill that
// the checkpoint on disk opens and verifies: a crash at any point leaves
// the previous complete file.
func TestKillDuringWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test skipped in -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt")
	rng := rand.New(rand.NewPCG(11, 12))
	const tries = 40
	failures := 0
	for try := range tries {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), killWriterEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if _, err := os.Stat(path); os.IsNotExist(err) {
			continue // killed before the first rename
		}
		r, err := Open(path)
		if err == nil {
			err = r.Verify()
			r.Close()
		}
		if err != nil {
			failures++
			t.Errorf("try %d: checkpoint unreadable after SIGKILL: %v", try, err)
		}
	}
	t.Logf("%d kills, %d unreadable checkpoints", tries, failures)
}
