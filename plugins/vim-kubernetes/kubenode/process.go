package kubenode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process of the data plane, in a network namespace, logging to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
	log  string
}

// startIn starts argv inside the named network namespace (nsenter --net: `ip netns
// exec` would remount /sys and hide the cgroup mounts the kubelet and runc need), with
// its output in logFile. env is added to the process's environment.
func startIn(netns, logFile string, env []string, argv ...string) (*proc, error) {
	args := append([]string{"--net=" + filepath.Join("/var/run/netns", netns), "--"}, argv...)
	cmd := exec.Command("nsenter", args...)
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// A group of its own, so that stop ends it and nothing else; killed with its parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	p := &proc{name: filepath.Base(argv[0]), cmd: cmd, done: make(chan error, 1), log: logFile}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// exited reports the process's end, if it has ended.
func (p *proc) exited() (error, bool) {
	select {
	case err := <-p.done:
		p.done <- err
		return err, true
	default:
		return nil, false
	}
}

// failure describes an ended process with the end of its log.
func (p *proc) failure(err error) error {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.name, err, p.log, strings.Join(lines, "\n"))
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.cmd.Process == nil {
		return
	}
	if _, done := p.exited(); done {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.done <- nil
}

// Start starts cmd from a thread that lives as long as this process. The kernel sends a
// child its Pdeathsig when the *thread* that forked it ends, not the process; Go ends
// the threads that goroutines locked (nsnet does, to enter namespaces) and forks from
// any thread, so a child started from an arbitrary goroutine could be killed at random.
// Every process that relies on Pdeathsig (to die with the tests that started it) is
// started here.
func Start(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread is never ended
			for s := range spawns {
				s.done <- s.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawns    chan spawn
)

// run runs a short command and returns its error with its output.
func run(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
