package vault

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"
)

// TestReadOrCreateConcurrent: processes that start at once (two `mcpgate
// connect` for one server) create the vault key together. Every one must
// get the same key and none may see it half-written — it once saw the
// file between its exclusive create and its write ("vault.key is damaged
// (0 bytes, want 32)") and refused to start.
func TestReadOrCreateConcurrent(t *testing.T) {
	for round := range 200 {
		path := filepath.Join(t.TempDir(), "vault.key")
		const n = 16
		keys := make([][]byte, n)
		errs := make([]error, n)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range n {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				keys[i], errs[i] = readOrCreate(path, 32)
			}()
		}
		start.Done()
		done.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, creator %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) || len(keys[i]) != 32 {
				t.Fatalf("round %d: creators got different keys", round)
			}
		}
	}
}
