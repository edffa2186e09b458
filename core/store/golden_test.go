package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/records.golden.json from the record types")

// goldenRecords are the record types the store keeps as JSON. Several embed SDK structs,
// whose fields carry no JSON tags: a renamed SDK field would silently drop stored data on
// the next read. The golden file pins the stored form of every field, so such a change
// fails here and comes with a schema version and a migration (schema.go).
func goldenRecords() map[string]any {
	return map[string]any{
		"slice":   &Slice{},
		"part":    &Part{},
		"link":    &Link{},
		"service": &Service{},
		"policy":  &Policy{},
		"tenant":  &Tenant{},
		"ledger":  &Ledger{},
		"event":   &Event{},
	}
}

// fill sets every exported field reachable from v to a value derived from its path, so
// that each field shows in the stored JSON under its own name with a distinct value.
func fill(v reflect.Value, path string, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.ToLower(path)) // lower case: some spec fields are canonicalised so on reading
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), path, n)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), path+"[0]", n)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(k, path+".key", n)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, path+".value", n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(*n) * time.Second)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() {
				fill(v.Field(i), path+"."+f.Name, n)
			}
		}
	}
}

func TestStoredRecordsKeepTheirForm(t *testing.T) {
	got := map[string]json.RawMessage{}
	for name, rec := range goldenRecords() {
		n := 0
		fill(reflect.ValueOf(rec).Elem(), name, &n)
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got[name] = b
		// What is stored reads back as the same record.
		back := reflect.New(reflect.TypeOf(rec).Elem()).Interface()
		if err := json.Unmarshal(b, back); err != nil {
			t.Fatalf("%s: read back: %v", name, err)
		}
		if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
			t.Errorf("%s: does not read back as written:\n%s\n%s", name, b, b2)
		}
	}
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	file := filepath.Join("testdata", "records.golden.json")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./core/store -run TestStoredRecordsKeepTheirForm -update writes it)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("the stored form of a record changed (schema version %d). If a necosd of this "+
			"version would misread what an older one stored, raise SchemaVersion and add a "+
			"migration in schema.go; then rewrite the golden file with -update.\ngot:\n%s", SchemaVersion, out)
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	var rec schemaRecord
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != SchemaVersion {
		t.Fatalf("a new store records version %d: got %+v, %v", SchemaVersion, rec, err)
	}

	// A store written by a newer necosd is refused, untouched.
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":`+strconv.Itoa(SchemaVersion+1)+`}`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.checkSchema(ctx); !errors.Is(err, ErrSchema) {
		t.Fatalf("newer schema: got %v, want ErrSchema", err)
	}

	// An older one is migrated step by step, then recorded at the version the necosd
	// knows (played here by a necosd that knows one version more than this one).
	known := SchemaVersion + 1
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":`+strconv.Itoa(SchemaVersion)+`}`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.checkSchemaAt(ctx, known); err == nil {
		t.Fatal("a version without a migration must be refused")
	}
	ran := 0
	migrations[SchemaVersion] = func(context.Context, *Store) error { ran++; return nil }
	defer delete(migrations, SchemaVersion)
	if _, err := s.checkSchemaAt(ctx, known); err != nil || ran != 1 {
		t.Fatalf("migration: err %v, ran %d times", err, ran)
	}
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != known {
		t.Fatalf("after the migration: %+v, %v", rec, err)
	}
}

// TestSchemaOfPendingChanges: part records may hold a pending elasticity intent
// ("change"), which a necosd of schema version 1 would read as a settled part. A store of
// version 1 is raised to 2 with its parts (a change included) read back as they were,
// and a necosd of version 1 refuses the store afterwards, untouched.
func TestSchemaOfPendingChanges(t *testing.T) {
	if SchemaVersion < 2 {
		t.Fatalf("SchemaVersion is %d: the part's change field came with version 2", SchemaVersion)
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	// A store as a necosd of version 1 left it: its version and a part with a change.
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":1}`); err != nil {
		t.Fatal(err)
	}
	p := &Part{SliceID: "s-1", Name: "edge", State: PartReady,
		Change: &PartChange{ID: "c-1", Kind: ChangeScale, VDU: "w", Instances: 3, Hold: ChangeAmount{Nodes: 2}, Want: ChangeAmount{Nodes: 3}, Reserved: true}}
	if err := s.PutPart(ctx, p); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openEmbedded(t, dir)
	var rec schemaRecord
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != SchemaVersion {
		t.Fatalf("a store of version 1 opens at version %d: got %+v, %v", SchemaVersion, rec, err)
	}
	got, err := s.GetPart(ctx, "s-1", "edge")
	if err != nil {
		t.Fatal(err)
	}
	if got.Change == nil || got.Change.ID != "c-1" || got.Change.Instances != 3 || !got.Change.Reserved {
		t.Fatalf("the pending change did not survive the migration: %+v", got.Change)
	}

	// A necosd of version 1 refuses it, and leaves the version as it was.
	if _, err := s.checkSchemaAt(ctx, 1); !errors.Is(err, ErrSchema) {
		t.Fatalf("a necosd of version 1 on a store of version %d: got %v, want ErrSchema", SchemaVersion, err)
	}
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != SchemaVersion {
		t.Fatalf("after the refusal: %+v, %v", rec, err)
	}
}

// TestSchemaOfDrift: part records may hold an unrepaired drift and changes that repair
// one, which a necosd of schema version 3 would drop. A store of version 3 opens at
// version 4 with its parts as they were, and a necosd of version 3 refuses it afterwards.
func TestSchemaOfDrift(t *testing.T) {
	if SchemaVersion < 4 {
		t.Fatalf("SchemaVersion is %d: the part's drift came with version 4", SchemaVersion)
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":3}`); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPart(ctx, &Part{SliceID: "s-1", Name: "core", State: PartReady}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openEmbedded(t, dir)
	var rec schemaRecord
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != SchemaVersion {
		t.Fatalf("a store of version 3 opens at version %d: got %+v, %v", SchemaVersion, rec, err)
	}
	if p, err := s.GetPart(ctx, "s-1", "core"); err != nil || p.Drift != nil || p.State != PartReady {
		t.Fatalf("part after the migration: %+v, %v", p, err)
	}
	if _, err := s.checkSchemaAt(ctx, 3); !errors.Is(err, ErrSchema) {
		t.Fatalf("a necosd of version 3 on a store of version %d: got %v, want ErrSchema", SchemaVersion, err)
	}
}
