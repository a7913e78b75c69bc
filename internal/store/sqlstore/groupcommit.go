package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/steward-iot/steward/internal/store"
)

// SQLite has one writer, so concurrent write transactions queue for it
// anyway, and each commit costs a WAL append and its system calls. Group
// commit runs the transactions waiting at the same moment as one: each in
// its own savepoint, so one that fails is undone alone, and one commit for
// all. Nobody's result is given before that commit.
//
// A member's statements run on a context that is not cancelled: SQLite
// answers an interrupted write by rolling back the whole transaction, which
// would undo the other members' work. A member whose context ends is
// rolled back to its savepoint once its function returns, so the caller
// still sees its change refused.

// maxGroup bounds one group: a long group delays its first member's answer.
const maxGroup = 64

type groupCommit struct {
	mu    sync.Mutex
	queue []*groupReq
	busy  bool // a leader is running groups
}

type groupReq struct {
	ctx  context.Context
	fn   func(store.Tx) error
	done chan groupResult // one leadership hand-over, then the result
}

type groupResult struct {
	err      error
	panicked any
	lead     bool // the caller now runs the next group
}

// update runs fn in a write transaction, with others waiting meanwhile.
func (g *groupCommit) update(db *DB, ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &groupReq{ctx: ctx, fn: fn, done: make(chan groupResult, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		select {
		case res := <-r.done:
			if !res.lead {
				return res.result()
			}
		case <-ctx.Done():
			if g.withdraw(r) {
				return ctx.Err()
			}
			res := <-r.done // in a running group, or made leader
			if !res.lead {
				return res.result()
			}
		}
	}
	// r leads: it is at the head of the queue.
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = append([]*groupReq(nil), g.queue[n:]...)
	g.mu.Unlock()
	db.runGroup(group)
	g.mu.Lock()
	g.handOff()
	g.mu.Unlock()
	return (<-r.done).result()
}

// handOff makes the next queued caller the leader, or ends leadership.
// g.mu is held.
func (g *groupCommit) handOff() {
	if len(g.queue) == 0 {
		g.busy = false
		return
	}
	g.queue[0].done <- groupResult{lead: true}
}

// withdraw takes r out of the queue when its context ended before its
// group ran. false: too late, r is in a running group (or was made the
// leader and must lead).
func (g *groupCommit) withdraw(r *groupReq) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, q := range g.queue {
		if q != r {
			continue
		}
		g.queue = append(g.queue[:i], g.queue[i+1:]...)
		select {
		case <-r.done: // it had been made the leader: pass that on
			g.handOff()
		default:
		}
		return true
	}
	return false
}

func (res groupResult) result() error {
	if res.panicked != nil {
		panic(res.panicked)
	}
	return res.err
}

// runGroup runs the group's functions in one transaction and gives each
// its result after the commit.
func (db *DB) runGroup(group []*groupReq) {
	if len(group) == 1 {
		r := group[0]
		var res groupResult
		func() {
			defer func() { res.panicked = recover() }()
			res.err = db.update(r.ctx, r.fn)
		}()
		r.done <- res
		return
	}
	results := make([]groupResult, len(group))
	failAll := func(err error) {
		for i, r := range group {
			if results[i].err == nil && results[i].panicked == nil {
				results[i].err = err
			}
			r.done <- results[i]
		}
	}
	sqlTx, err := db.w.BeginTx(context.Background(), nil)
	if err != nil {
		failAll(fmt.Errorf("starting a transaction: %w", err))
		return
	}
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		if _, err := sqlTx.Exec(`SAVEPOINT member`); err != nil {
			sqlTx.Rollback()
			failAll(fmt.Errorf("starting a savepoint: %w", err))
			return
		}
		t := &tx{reader: reader{q: fixedCtx{sqlTx, context.WithoutCancel(r.ctx)}, d: db.d, box: db.box}, tx: sqlTx}
		func() {
			defer func() {
				if p := recover(); p != nil {
					results[i].panicked = p
				}
			}()
			results[i].err = r.fn(t)
		}()
		if results[i].err == nil && results[i].panicked == nil {
			results[i].err = r.ctx.Err() // ended meanwhile: undone below
		}
		undo := results[i].err != nil || results[i].panicked != nil
		if undo {
			if _, err := sqlTx.Exec(`ROLLBACK TO member`); err != nil {
				sqlTx.Rollback()
				failAll(fmt.Errorf("undoing a failed change: %w", err))
				return
			}
		}
		if _, err := sqlTx.Exec(`RELEASE member`); err != nil {
			sqlTx.Rollback()
			failAll(fmt.Errorf("ending a savepoint: %w", err))
			return
		}
	}
	if err := sqlTx.Commit(); err != nil {
		err = fmt.Errorf("committing: %w", mapErr(err, ""))
		for i := range results {
			results[i] = groupResult{err: err, panicked: results[i].panicked}
		}
	}
	for i, r := range group {
		r.done <- results[i]
	}
}

// update runs fn alone in one write transaction.
func (db *DB) update(ctx context.Context, fn func(store.Tx) error) error {
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting a transaction: %w", err)
	}
	t := &tx{reader: reader{q: sqlTx, d: db.d, box: db.box}, tx: sqlTx}
	committed := false
	defer func() {
		if !committed {
			sqlTx.Rollback()
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("committing: %w", mapErr(err, ""))
	}
	return nil
}

// fixedCtx runs statements on its own context, whatever they are given.
type fixedCtx struct {
	q   querier
	ctx context.Context
}

func (f fixedCtx) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	return f.q.ExecContext(f.ctx, query, args...)
}

func (f fixedCtx) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	return f.q.QueryContext(f.ctx, query, args...)
}

func (f fixedCtx) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	return f.q.QueryRowContext(f.ctx, query, args...)
}
