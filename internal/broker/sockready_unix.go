//go:build unix

package broker

import (
	"errors"

	"golang.org/x/sys/unix"
)

// socketReady looks at the socket without taking anything from it: it has
// data, an end or an error, or (false) nothing yet. poll, not a peeking
// recv: a peek would take a pending error (a reset) with it, and the read
// that follows would see a clean end instead.
func socketReady(fd uintptr) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if !errors.Is(err, unix.EINTR) {
			return err != nil || n > 0 // on an error of poll itself, the read finds out
		}
	}
}
