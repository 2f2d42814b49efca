package chlocal

import (
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group, so a terminal's Ctrl-C
// reaches only deploywatch, which stops the server itself, and asks the kernel to
// SIGTERM the server should deploywatch (or a test binary) die without Stop.
// (Linux sends it when the OS thread that started the server ends; Go ends a
// thread only when a goroutine locked to it exits, which Start never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func terminate(p *os.Process) error { return signalGroup(p, syscall.SIGTERM) }

func kill(p *os.Process) error { return signalGroup(p, syscall.SIGKILL) }

// signalGroup signals the process group that sysProcAttr made; the server's pid
// is the group id.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}
