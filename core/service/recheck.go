package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// An Applied service is one whose steps all ran while some workloads were not ready yet
// (pods Pending, replicas unavailable). It moves on when they do: reading the service
// (Get, List) asks the deployer of each applied part again, and records Deployed — or
// Failed, when a workload can no longer start — with an event.
//
// Re-checked on read rather than watched: the deployers evaluate the workloads afresh on
// every DeployStatus (the plugin keeps no state of its own for it), the orchestrator has
// no reconciler loop to hang a watch on, and a check on read needs nothing to be running
// for it, so it holds across a restart of necosd and costs nothing while nobody looks.
// What a reader sees is as fresh as the read.

// recheckTimeout bounds one part's DeployStatus during a read.
const recheckTimeout = 10 * time.Second

// errUnchanged aborts a record update that has nothing to change.
var errUnchanged = errors.New("unchanged")

// recheck evaluates the applied parts of an Applied service again and records what
// changed; it returns the record as it now is (rec itself when nothing changed or the
// check could not be made: a read never fails for it).
func (o *Orchestrator) recheck(ctx context.Context, v *sro.View, rec *Record) *Record {
	if rec.State != store.ServiceApplied {
		return rec
	}
	o.mu.Lock()
	_, busy := o.running[key(rec.SliceID, rec.ID)]
	o.mu.Unlock()
	if busy {
		return rec // a deployment of it runs: it records its own outcome
	}
	fresh := map[string]sdk.Deployment{}
	for _, sp := range rec.Parts {
		if sp.State != sdk.DeployApplied {
			continue
		}
		part, ok := v.Part(sp.Name)
		if !ok || part.Observed == nil {
			continue
		}
		dep, err := o.opts.Deployers.Deployer(ctx, part.Provider)
		if err != nil {
			o.log.Warn("re-check of an applied service: no deployer", "slice", rec.SliceID, "service", rec.ID,
				"part", sp.Name, "error", err)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, recheckTimeout)
		d, err := dep.DeployStatus(sctx, sdk.DeployStatusRequest{ServiceID: rec.ID, Ref: part.Ref()})
		cancel()
		if err != nil {
			o.log.Warn("re-check of an applied service", "slice", rec.SliceID, "service", rec.ID, "part", sp.Name, "error", err)
			continue
		}
		switch d.State {
		case sdk.DeploySucceeded, sdk.DeployFailed, sdk.DeployApplied:
			if d.State != sp.State || d.Message != sp.Message {
				fresh[sp.Name] = d
			}
		}
	}
	if len(fresh) == 0 {
		return rec
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	updated, err := o.store.UpdateService(wctx, rec.SliceID, rec.ID, func(s *store.Service) ([]store.Event, error) {
		// Another deployment (or an undeploy) began since the read: its record wins.
		if s.State != store.ServiceApplied || s.Generation != rec.Generation {
			return nil, errUnchanged
		}
		for i := range s.Parts {
			sp := &s.Parts[i]
			if d, ok := fresh[sp.Name]; ok && sp.State == sdk.DeployApplied {
				sp.State, sp.Message = d.State, d.Message
			}
		}
		state, msg := outcome(s.Parts, false)
		s.State, s.Message = state, msg
		if state == store.ServiceApplied {
			return nil, nil // still waiting: the parts' messages say for what now
		}
		s.FinishedAt = time.Now().UTC()
		ev := EvDeployed
		if state == store.ServiceFailed {
			ev = EvFailed
		}
		return []store.Event{{Type: ev, Message: fmt.Sprintf("service %s: %s (workloads re-checked)", s.ID, msg),
			Data: map[string]string{"service": s.ID}}}, nil
	})
	if err != nil {
		if !errors.Is(err, errUnchanged) && !errors.Is(err, store.ErrNotFound) {
			o.log.Warn("record the re-check of an applied service", "slice", rec.SliceID, "service", rec.ID, "error", err)
		}
		return rec
	}
	if updated.State != rec.State {
		o.log.Info("applied service re-checked", "slice", rec.SliceID, "service", rec.ID, "state", updated.State,
			"message", updated.Message)
	}
	return updated
}
