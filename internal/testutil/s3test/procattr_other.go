//go:build !linux

package s3test

import "syscall"

// dieWithParent: only Linux can tie a child's life to its parent's; the
// tests stop the server themselves.
func dieWithParent() *syscall.SysProcAttr { return nil }
