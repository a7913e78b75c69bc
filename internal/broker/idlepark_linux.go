//go:build linux

package broker

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The idle poller: one epoll instance, beside the Go runtime's own, on
// which parked connections wait without a goroutine. A registration is
// one-shot and named by a token, never by the socket's number, which the
// kernel reuses once a socket is closed.
type idlePoller struct {
	once sync.Once
	epfd int
	err  error

	mu     sync.Mutex
	next   uint64
	parked map[uint64]*idleConn
}

var poller idlePoller

func (p *idlePoller) start() error {
	p.once.Do(func() {
		p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if p.err == nil {
			p.parked = map[uint64]*idleConn{}
			go p.run()
		}
	})
	return p.err
}

// run wakes the connections whose sockets became readable (or hung up).
func (p *idlePoller) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if !errors.Is(err, unix.EINTR) {
				time.Sleep(10 * time.Millisecond) // not expected; do not spin
			}
			continue
		}
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			c := p.parked[tok]
			p.mu.Unlock()
			if c != nil {
				c.wake(parking{token: tok})
			}
		}
	}
}

// parking is a connection's registration with the poller while parked.
type parking struct {
	token  uint64 // 0: not parked
	fd     int
	timer  *time.Timer
	resume func()
}

func (p parking) active() bool      { return p.token != 0 }
func (p parking) is(q parking) bool { return p.token != 0 && p.token == q.token }

// park registers c (c.pmu held, c open) and reports whether it did.
func (c *idleConn) park(resume func()) bool {
	if poller.start() != nil {
		return false
	}
	fd := -1
	if err := c.raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return false
	}
	poller.mu.Lock()
	poller.next++
	tok := poller.next
	poller.parked[tok] = c
	poller.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(poller.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		poller.mu.Lock()
		delete(poller.parked, tok)
		poller.mu.Unlock()
		return false
	}
	c.parked = parking{token: tok, fd: fd, resume: resume}
	if !c.deadline.IsZero() {
		c.parked.timer = time.AfterFunc(time.Until(c.deadline), func() { c.wake(parking{token: tok}) })
	}
	return true
}

// unpark ends c's registration (c.pmu held, c parked, its socket still
// open) and returns the reader to resume.
func (c *idleConn) unpark() func() {
	p := c.parked
	c.parked = parking{}
	_ = unix.EpollCtl(poller.epfd, unix.EPOLL_CTL_DEL, p.fd, nil)
	poller.mu.Lock()
	delete(poller.parked, p.token)
	poller.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
	}
	return p.resume
}

// parkedCount reports how many connections are parked (tests).
func parkedCount() int {
	poller.mu.Lock()
	defer poller.mu.Unlock()
	return len(poller.parked)
}
