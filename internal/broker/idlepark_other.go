//go:build !linux

package broker

// Parking needs epoll; elsewhere an idle connection keeps its goroutine.

type parking struct{}

func (parking) active() bool         { return false }
func (parking) is(parking) bool      { return false }
func (c *idleConn) park(func()) bool { return false }
func (c *idleConn) unpark() func()   { return nil }
func parkedCount() int               { return 0 }
