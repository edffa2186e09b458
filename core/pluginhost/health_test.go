package pluginhost_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
)

func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

// A plugin SIGKILLed between calls is relaunched (re-verified, re-configured) by the
// next call, which succeeds; concurrent callers share one relaunch.
func TestRelaunchAfterKill(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	state := t.TempDir()
	in := startMemvim(t, h, "spain", state)
	vim := vimOf(t, in)
	ctx := ctxT(t)
	ref := sdk.PartRef{SliceID: "s1", PartID: "core"}
	if _, err := vim.Create(ctx, sdk.CreateRequest{Part: smallPart("s1", "core")}); err != nil {
		t.Fatal(err)
	}
	old := in.Status().Pid
	kill(t, old)

	var wg sync.WaitGroup
	errs := make([]error, 8)
	parts := make([]sdk.Part, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = vim.Describe(ctx, sdk.DescribeRequest{Ref: ref})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d after the kill: %v", i, err)
		}
		// The new process found the part: it was configured with the same state_dir.
		if parts[i].Name != "core" || parts[i].Attributes["pid"] == strconv.Itoa(old) {
			t.Fatalf("call %d answered by %s: %+v", i, parts[i].Attributes["pid"], parts[i])
		}
	}
	st := in.Status()
	if st.Restarts != 1 || st.State != pluginhost.StateRunning || st.Pid == old || st.Pid == 0 {
		t.Fatalf("status after relaunch: %+v", st)
	}
	t.Logf("why it was relaunched: %s", st.LastError)
	if got := launches(t, state); len(got) != 2 || got[1] != strconv.Itoa(st.Pid) {
		t.Fatalf("launches: %v (current pid %d)", got, st.Pid)
	}
	waitFor(t, "killed process reaped", 10*time.Second, func() bool { return processGone(old) })

	// Application errors are answers: not retried, no relaunch.
	_, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s1", PartID: "nope"}})
	if !sdk.IsNotFound(err) || !strings.Contains(err.Error(), `"spain"`) {
		t.Fatalf("unknown part: want NotFound naming the instance, got %v", err)
	}
	if st := in.Status(); st.Restarts != 1 || strconv.Itoa(st.Pid) != parts[0].Attributes["pid"] {
		t.Fatalf("an application error caused a relaunch: %+v", st)
	}
}

// A plugin that dies in the middle of a call is relaunched and the call is retried.
func TestRelaunchDuringCall(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	state := t.TempDir()
	in := startMemvim(t, h, "spain", state)
	old := in.Status().Pid

	part, err := vimOf(t, in).Describe(ctxT(t), sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s1", PartID: "crash-once"}})
	if err != nil {
		t.Fatalf("the retried call failed: %v", err)
	}
	if part.Name != "survivor" || part.Attributes["pid"] == strconv.Itoa(old) {
		t.Fatalf("answer: %+v", part)
	}
	if st := in.Status(); st.Restarts != 1 || st.State != pluginhost.StateRunning {
		t.Fatalf("status: %+v", st)
	}
	if got := launches(t, state); len(got) != 2 {
		t.Fatalf("launches: %v", got)
	}
}

// A call is retried once only; relaunches after that wait for the backoff. A call made
// meanwhile whose deadline comes first fails at once with CodeUnavailable; one that can
// wait waits for the relaunch and succeeds.
func TestRetryOnceThenBackoff(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{
		NewBackOff: func() backoff.BackOff { return backoff.NewConstantBackOff(2 * time.Second) },
	})
	state := t.TempDir()
	in := startMemvim(t, h, "spain", state)
	vim := vimOf(t, in)
	ctx := ctxT(t)
	if _, err := vim.Create(ctx, sdk.CreateRequest{Part: smallPart("s1", "core")}); err != nil {
		t.Fatal(err)
	}

	_, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s1", PartID: "crash-always"}})
	if err == nil || sdk.CodeOf(err) != sdk.CodeUnavailable {
		t.Fatalf("a call that kills the plugin every time: want Unavailable, got %v", err)
	}
	t.Logf("crash-always: %v", err)
	if got := launches(t, state); len(got) != 2 {
		t.Fatalf("want the first launch and exactly one relaunch, got launches %v", got)
	}
	if st := in.Status(); st.Restarts != 1 {
		t.Fatalf("status: %+v", st)
	}

	// Right away, a call that cannot wait 2 s: inside the backoff, no launch, a clear
	// Unavailable error.
	waitFor(t, "second process seen dead", 10*time.Second, func() bool { return in.Status().State != pluginhost.StateRunning })
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	_, err = vim.Describe(short, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s1", PartID: "core"}})
	cancel()
	if sdk.CodeOf(err) != sdk.CodeUnavailable || !strings.Contains(err.Error(), "next relaunch attempt") {
		t.Fatalf("call inside the backoff: %v", err)
	}
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("a call that cannot wait for the relaunch took %v to fail", took)
	}
	if got := launches(t, state); len(got) != 2 {
		t.Fatalf("relaunched inside the backoff: launches %v", got)
	}
	if st := in.Status(); st.NextRestart.IsZero() || st.LastError == "" {
		t.Errorf("status inside the backoff should say when and why: %+v", st)
	}

	// A call that can wait waits for the relaunch and succeeds.
	part, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s1", PartID: "core"}})
	if err != nil {
		t.Fatalf("a call with time to wait for the relaunch: %v", err)
	}
	if st := in.Status(); st.Restarts != 2 || st.State != pluginhost.StateRunning || part.Name != "core" {
		t.Fatalf("status: %+v", st)
	}
}

// A plugin killed twice within a minute is relaunched after a backoff; a call made
// meanwhile, as the engine's Connect during the second kill, waits for the relaunch
// within its deadline and succeeds instead of failing the slice.
func TestCallWaitsForRelaunch(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{
		NewBackOff: func() backoff.BackOff { return backoff.NewConstantBackOff(1500 * time.Millisecond) },
	})
	state := t.TempDir()
	in := startMemvim(t, h, "spain", state)
	vim := vimOf(t, in)
	ctx := ctxT(t)
	ref := sdk.PartRef{SliceID: "s1", PartID: "core"}
	if _, err := vim.Create(ctx, sdk.CreateRequest{Part: smallPart("s1", "core")}); err != nil {
		t.Fatal(err)
	}
	kill(t, in.Status().Pid)
	if _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil { // relaunched at once
		t.Fatalf("after the first kill: %v", err)
	}
	kill(t, in.Status().Pid) // within a minute: the next relaunch waits 1.5 s
	waitFor(t, "second process seen dead", 10*time.Second, func() bool { return in.Status().State != pluginhost.StateRunning })
	start := time.Now()
	part, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref})
	if err != nil {
		t.Fatalf("a call during the relaunch backoff failed instead of waiting: %v", err)
	}
	t.Logf("the call waited %v for the relaunch", time.Since(start))
	if part.Name != "core" {
		t.Fatalf("answer: %+v", part)
	}
	if st := in.Status(); st.Restarts != 2 || st.State != pluginhost.StateRunning {
		t.Fatalf("status: %+v", st)
	}

	// A stopped instance wakes a call waiting for its relaunch.
	kill(t, in.Status().Pid)
	waitFor(t, "third process seen dead", 10*time.Second, func() bool { return in.Status().State != pluginhost.StateRunning })
	if _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil { // relaunched after the backoff
		t.Fatal(err)
	}
	kill(t, in.Status().Pid)
	waitFor(t, "fourth process seen dead", 10*time.Second, func() bool { return in.Status().State != pluginhost.StateRunning })
	errc := make(chan error, 1)
	go func() { _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); errc <- err }()
	time.Sleep(200 * time.Millisecond)
	if err := h.Stop("spain"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, pluginhost.ErrClosed) {
			t.Fatalf("a call waiting for the relaunch of a stopped instance: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call waiting for a relaunch was not woken by Stop")
	}
}

// A plugin that answers CodeUnavailable itself (its backend is down) is alive: the call
// is not retried and the plugin not relaunched.
func TestApplicationUnavailableIsNotRetried(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	state := t.TempDir()
	in, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "influx", Plugin: "memvim",
		Config: memvimConfig(state, `"healthy": false`)})
	if err != nil {
		t.Fatal(err)
	}
	mon, err := in.Monitor()
	if err != nil {
		t.Fatal(err)
	}
	pid := in.Status().Pid
	err = mon.Health(ctxT(t))
	if sdk.CodeOf(err) != sdk.CodeUnavailable || !strings.Contains(err.Error(), "healthy=false") {
		t.Fatalf("health: %v", err)
	}
	if st := in.Status(); st.Restarts != 0 || st.Pid != pid {
		t.Fatalf("an application Unavailable relaunched the plugin: %+v", st)
	}
	if got := launches(t, state); len(got) != 1 {
		t.Fatalf("launches: %v", got)
	}
}

// Monitor.Write is retried across a relaunch; Flush says when queued points may have
// been lost with a dead process.
func TestMonitorAcrossRelaunch(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	in := startMemvim(t, h, "influx", t.TempDir())
	mon, err := in.Monitor()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	pts := []sdk.Point{{Metric: "cpu", Value: 1}, {Metric: "cpu", Value: 2, Time: time.Unix(100, 0)}}
	if err := mon.Write(ctx, sdk.WriteRequest{Points: pts}); err != nil {
		t.Fatal(err)
	}
	if !pts[0].Time.IsZero() {
		t.Fatal("Write modified the caller's points")
	}
	got, err := mon.Query(ctx, sdk.Query{Metric: "cpu"})
	if err != nil || len(got) != 2 || got[1].Time.IsZero() || got[0].Time.IsZero() {
		t.Fatalf("query: %v %+v", err, got)
	}
	if err := mon.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Written, not flushed, plugin dies: Flush reports the possible loss once.
	if err := mon.Write(ctx, sdk.WriteRequest{Points: pts}); err != nil {
		t.Fatal(err)
	}
	kill(t, in.Status().Pid)
	if err := mon.Flush(ctx); sdk.CodeOf(err) != sdk.CodeAborted || !strings.Contains(err.Error(), "may be lost") {
		t.Fatalf("flush after a relaunch: want Aborted, got %v", err)
	}
	if err := mon.Flush(ctx); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	if st := in.Status(); st.Restarts != 1 {
		t.Fatalf("status: %+v", st)
	}
}

// A relaunch verifies the binary again: one replaced since the start is refused until
// it is re-locked.
func TestRelaunchReverifies(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{
		NewBackOff: func() backoff.BackOff { return &backoff.ZeroBackOff{} },
	})
	in := startMemvim(t, h, "spain", t.TempDir())
	vim := vimOf(t, in)
	ctx := ctxT(t)
	path := filepath.Join(dir, "necos-plugin-memvim")
	tamper(t, path)
	kill(t, in.Status().Pid)

	_, err := vim.Offer(ctx, sdk.OfferRequest{Part: smallPart("s1", "core")})
	if !errors.Is(err, pluginhost.ErrHashMismatch) || !strings.Contains(err.Error(), path) {
		t.Fatalf("relaunch of a replaced binary: want ErrHashMismatch naming %s, got %v", path, err)
	}
	st := in.Status()
	if st.State != pluginhost.StateFailed || !strings.Contains(st.LastError, "does not match") || st.Pid != 0 {
		t.Fatalf("status: %+v", st)
	}

	if _, err := h.Lock("memvim"); err != nil {
		t.Fatal(err)
	}
	if _, err := vim.Offer(ctx, sdk.OfferRequest{Part: smallPart("s1", "core")}); err != nil {
		t.Fatalf("after re-lock: %v", err)
	}
	if st := in.Status(); st.State != pluginhost.StateRunning || st.Restarts != 1 {
		t.Fatalf("status: %+v", st)
	}
}
