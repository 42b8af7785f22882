// Command pause is the sandbox process of a test cluster's pods (containerd's sandbox_image): it
// holds the pod's namespaces and does nothing else. It exits 0 on SIGTERM or SIGINT (as PID 1 a
// process gets no default action for them, so it must handle them) and reaps the orphans a shared
// PID namespace hands it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
