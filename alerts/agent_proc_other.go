//go:build !unix

package alerts

import "os/exec"

// Outside Unix there are no process groups: a timeout ends the shell only.
func setProcessGroup(*exec.Cmd) {}
