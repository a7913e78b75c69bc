package sqlstore

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/store"
)

// TestGroupCommit queues writes behind a blocked one, so that they run in
// groups, and mixes in every way a member can end: committed, refused by
// its function, failing on a constraint, its context ending during or
// before its turn, and a panic. Each caller must get its own outcome, and
// only the committed members' rows may be stored.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "g.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE gc_test (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	insert := func(stx store.Tx, k int) error {
		_, err := stx.(*tx).exec(ctx, `INSERT INTO gc_test (k) VALUES (?)`, k)
		err = mapErr(err, "k")
		return err
	}

	// The first write holds the writer until the others are queued.
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.Update(ctx, func(tx store.Tx) error {
			<-release
			return insert(tx, 0)
		})
	}()
	waitFor := func(what string, ok func() bool) {
		for range 10000 {
			db.group.mu.Lock()
			done := ok()
			db.group.mu.Unlock()
			if done {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("waited 10 s for %s", what)
	}
	// The first write leads, alone, and waits inside its transaction.
	waitFor("the first write to lead", func() bool { return db.group.busy && len(db.group.queue) == 0 })
	const n = 150
	errRefused := errors.New("refused by the function")
	type outcome struct {
		err      error
		panicked any
	}
	outcomes := make([]outcome, n)
	withdrawn := make(chan struct{})
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { outcomes[i].panicked = recover() }()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if i == 77 { // ends while queued: withdrawn before its group
				go func() { <-withdrawn; cancel() }()
			}
			outcomes[i].err = db.Update(cctx, func(tx store.Tx) error {
				if err := insert(tx, i); err != nil {
					return err
				}
				switch {
				case i%5 == 1:
					return errRefused
				case i%5 == 2:
					return insert(tx, i) // the same key again: a conflict
				case i%7 == 3:
					cancel() // the caller gave up meanwhile
				case i == 100:
					panic("member 100 panics")
				}
				return nil
			})
		}()
	}
	waitFor("all to queue behind the first", func() bool { return len(db.group.queue) == n-1 })
	close(withdrawn)
	waitFor("member 77 to withdraw", func() bool { return len(db.group.queue) == n-2 })
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	wg.Wait()

	var want []int
	want = append(want, 0)
	for i := 1; i < n; i++ {
		o := outcomes[i]
		switch {
		case i == 77:
			if !errors.Is(o.err, context.Canceled) {
				t.Errorf("member %d (withdrawn): got %v, want context.Canceled", i, o.err)
			}
		case i%5 == 1:
			if !errors.Is(o.err, errRefused) {
				t.Errorf("member %d: got %v, want its own error", i, o.err)
			}
		case i%5 == 2:
			if !errors.Is(o.err, store.ErrConflict) {
				t.Errorf("member %d: got %v, want a conflict", i, o.err)
			}
		case i%7 == 3:
			if !errors.Is(o.err, context.Canceled) {
				t.Errorf("member %d (context ended): got %v, want context.Canceled", i, o.err)
			}
		case i == 100:
			if o.panicked != "member 100 panics" {
				t.Errorf("member %d: panic %v, want its own panic in its own goroutine", i, o.panicked)
			}
		default:
			if o.err != nil || o.panicked != nil {
				t.Errorf("member %d: got %v / panic %v, want success", i, o.err, o.panicked)
			}
			want = append(want, i)
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT k FROM gc_test ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var k int
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stored keys:\n got %v\nwant %v", got, want)
	}
	if db.group.busy || len(db.group.queue) != 0 {
		t.Fatalf("after all writes: busy %v, %d queued", db.group.busy, len(db.group.queue))
	}
	// The writer still works alone.
	if err := db.Update(ctx, func(tx store.Tx) error { return insert(tx, n) }); err != nil {
		t.Fatalf("a write afterwards: %v", err)
	}
	t.Logf("%d members, %d committed", n, len(want))
}
