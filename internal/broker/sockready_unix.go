//go:build unix

package broker

import (
	"errors"
	"syscall"
)

// socketReady looks at the socket without taking anything from it: it has
// data, an end or an error, or (false) nothing yet.
func socketReady(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if !errors.Is(err, syscall.EINTR) {
			return !errors.Is(err, syscall.EAGAIN)
		}
	}
}
