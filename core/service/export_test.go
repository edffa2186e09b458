package service

// OnEnded makes o call f once each deployment's end is recorded, before those waiting
// for it are woken.
func OnEnded(o *Orchestrator, f func(sliceID, id string)) { o.ended = f }
