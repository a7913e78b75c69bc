//go:build linux

package s3test

import "syscall"

// dieWithParent makes the server die with the test binary, however that
// ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
