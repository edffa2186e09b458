package sro_test

import (
	"testing"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

func TestLifecycleStatusFollowsTheSlice(t *testing.T) {
	for st, want := range map[store.SliceState]string{
		store.SlicePending:     "construction",
		store.SliceCreating:    "construction",
		store.SliceReady:       "active",
		store.SliceDegraded:    "degraded",
		store.SliceRollingBack: "failed",
		store.SliceFailed:      "failed",
		store.SliceDeleting:    "decommissioning",
	} {
		if got := sro.LifecycleStatus(st); got != want {
			t.Errorf("LifecycleStatus(%s) = %q, want %q", st, got, want)
		}
	}
}
