package mqtt

import (
	"testing"
	"time"
)

// TestGetByListenerWithWriter: GetByListener took the read lock twice (once
// more through Len). A writer arriving in between, such as a client
// detaching while the listeners close, then blocked the second read lock
// and itself for good (patch: it reads the map's length directly). The
// race is timing-dependent; many rounds against a busy writer hit it
// within a second or so when the bug is there.
func TestGetByListenerWithWriter(t *testing.T) {
	cs := NewClients()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200000; i++ {
			cs.GetByListener("t")
		}
	}()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				cs.Add(&Client{ID: "x"})
				cs.Delete("x")
			}
		}
	}()
	defer close(stop)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("GetByListener deadlocked against a writer")
	}
}
