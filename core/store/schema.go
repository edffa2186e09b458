package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SchemaVersion is the layout of the stored records this necosd reads and writes: the
// keys and the JSON of every record type (pinned by testdata/records.golden.json). Raise
// it with any change a necosd of the previous version would misread, and add the step
// that brings a store from the previous version to it to migrations.
//
// Versions:
//   - 1: the first recorded layout.
//   - 2: a part's record may hold a pending elasticity intent ("change", PartChange) that
//     the reconciler converges. A necosd of version 1 would read such a part as settled,
//     ignore the change and leave its reservation and backend out of step: it must refuse
//     a store of version 2.
//   - 3: a held VNI (vnis/<vni> → holder) comes with its holder index
//     (vniholders/<holder> → VNI), written and deleted in the same transaction, so that
//     allocations and releases read no more than their holder's keys. A necosd of
//     version 2 would allocate and release without the index and leave it naming VNIs
//     no longer held (a holder would be handed a VNI another link took): it must refuse
//     a store of version 3. The migration indexes the VNIs held.
//   - 4: a part's record may hold the drift the reconciler could not repair ("drift",
//     PartDrift), and a change the reconciler wrote itself to repair one (the change's
//     "drift"). A necosd of version 3 would drop both on its next write of the part and
//     take a repair for a tenant's change; one that leads while another shows the
//     slices would leave a drift shown that no pass clears: it must refuse a store of
//     version 4. Nothing is rewritten: a part without the fields has no drift recorded.
//     The same version brings scale-in policies (remove-* actions, "min" on an action,
//     "min-nodes", "min-cpus", "min-memory-mb" in the vertical constraints), which a
//     necosd of version 3 would evaluate as growing ones.
//   - 5: a policy's trigger may say on how many nodes it must hold ("nodes": "any" or
//     "all"; a scale-in policy without it holds on every node measured). A necosd of
//     version 4 would refuse to read a policy with the field, and fire a scale-in
//     policy without it on one idle node among busy ones: it must refuse a store of
//     version 5. Nothing is rewritten.
//   - 6: every slice has an order record (order/<tenant>/<created>-<id> → id, written
//     and deleted with the slice in one transaction), from which the API's pages are
//     read. A necosd of version 5 would create slices without it, which no page would
//     then show: it must refuse a store of version 6. The migration writes the order
//     record of every slice stored.
const SchemaVersion = 6

// migrations[v] rewrites a store at version v into version v+1. Each step must be safe to
// run again after a crash halfway (the version is raised only after it succeeds).
var migrations = map[int]func(ctx context.Context, s *Store) error{
	// A store of version 1 holds parts without "change" (or, written by a necosd built
	// between the field and this version, with it): both read as they are. Nothing is
	// rewritten; the version is raised so that a necosd of version 1 refuses the store.
	1: func(context.Context, *Store) error { return nil },
	// A store of version 2 holds VNI records without their holder index: write it.
	2: indexVNIHolders,
	// A store of version 3 holds no drift: the version is raised only.
	3: func(context.Context, *Store) error { return nil },
	// A store of version 4 holds no trigger.nodes: the version is raised only.
	4: func(context.Context, *Store) error { return nil },
	// A store of version 5 has no order records: write them.
	5: orderSlices,
}

// orderSlices writes the order record of every slice stored (again, after a crash: a
// put of the same key and value).
func orderSlices(ctx context.Context, s *Store) error {
	slices, err := s.ListSlices(ctx, "")
	if err != nil {
		return err
	}
	for _, sl := range slices {
		id, _ := json.Marshal(sl.ID)
		// Only while the slice exists: one deleted meanwhile leaves no record behind.
		tctx, cancel := withTimeout(ctx)
		_, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(s.sliceKey(sl.ID)), ">", 0)).
			Then(clientv3.OpPut(s.orderKey(sl.Tenant, sl.CreatedAt, sl.ID), string(id))).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("order record of slice %s: %w", sl.ID, err)
		}
	}
	if len(slices) > 0 {
		s.logger.Info("slices given their order records", "slices", len(slices))
	}
	return nil
}

// ErrSchema is returned by Open when the store was written by a newer necosd.
var ErrSchema = errors.New("store schema is newer than this necosd")

// schemaRecord is the store's version, under <prefix>schema.
type schemaRecord struct {
	Version int `json:"version"`
}

// checkSchema records the schema version of a new store, migrates an older one step by
// step, and refuses one written by a newer necosd (it would drop what it cannot read).
// unversioned reports a store that recorded no version: a new one, or one written
// before versions were.
func (s *Store) checkSchema(ctx context.Context) (unversioned bool, err error) {
	return s.checkSchemaAt(ctx, SchemaVersion)
}

// checkSchemaAt is checkSchema for a necosd that knows up to version known (a test plays
// an older necosd with it).
func (s *Store) checkSchemaAt(ctx context.Context, known int) (unversioned bool, err error) {
	key := s.key("schema")
	for {
		var rec schemaRecord
		rev, err := s.get(ctx, key, &rec)
		if errors.Is(err, ErrNotFound) {
			unversioned = true
			_, err = s.commit(ctx, op{key: key, v: schemaRecord{Version: known}, rev: 0})
			if errors.Is(err, ErrExists) {
				continue // another necosd wrote it first: read it
			}
			return unversioned, err
		}
		if err != nil {
			return unversioned, err
		}
		switch {
		case rec.Version == known:
			return unversioned, nil
		case rec.Version > known:
			return unversioned, fmt.Errorf("%w: the store is at version %d, this necosd knows up to %d: run a newer necosd", ErrSchema, rec.Version, known)
		}
		step, ok := migrations[rec.Version]
		if !ok {
			return unversioned, fmt.Errorf("store: no migration from schema version %d to %d", rec.Version, rec.Version+1)
		}
		s.logger.Info("migrating the store", "from", rec.Version, "to", rec.Version+1)
		if err := step(ctx, s); err != nil {
			return unversioned, fmt.Errorf("store: migrate schema %d to %d: %w", rec.Version, rec.Version+1, err)
		}
		if _, err := s.commit(ctx, op{key: key, v: schemaRecord{Version: rec.Version + 1}, rev: rev}); err != nil && !errors.Is(err, ErrConflict) {
			return unversioned, err
		}
	}
}
