//go:build unix

package alerts

import (
	"os/exec"
	"syscall"
)

// setProcessGroup runs the command in its own process group: a Ctrl-C in the
// agent's terminal reaches only the agent (which lets the command finish),
// and a timeout ends the command and every process it started (kubectl under
// sh), not sh alone.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if err == syscall.ESRCH {
			return nil
		}
		return err
	}
}
