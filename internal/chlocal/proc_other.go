//go:build !linux

package chlocal

import (
	"os"
	"syscall"
)

// Outside Linux there is no parent-death signal; Stop must be called.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func terminate(p *os.Process) error { return p.Signal(os.Interrupt) }

func kill(p *os.Process) error { return p.Kill() }
