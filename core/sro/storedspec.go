package sro

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
)

// EvSpecCorrupt records, once per slice, that its stored spec no longer parses (a
// document a newer version refuses, or a record damaged in the store): the engine and
// its listeners then use what the records say and the defaults, and the calls that need
// the document (render it, add a part from it, plan it) fail with ErrCorruptSpec.
const EvSpecCorrupt = "slice.spec-corrupt"

// ErrCorruptSpec is the error of a stored spec that does not parse.
var ErrCorruptSpec = errors.New("stored spec does not parse")

// StoredSpec parses a slice's stored spec: the one place that does, with one error
// policy. Its error wraps ErrCorruptSpec and names the slice.
func StoredSpec(sl *store.Slice) (*spec.Slice, error) {
	s, err := ParseSpec(sl.Spec)
	if err != nil {
		return nil, fmt.Errorf("slice %s: %w: %w", sl.ID, ErrCorruptSpec, err)
	}
	return s, nil
}

// ParseSpec parses and validates a slice spec as spec.ParseSlice does, and reuses the
// result for the same text. The spec returned is shared: its readers never change it
// (View.WholeSpec makes the copy that may change).
//
// A slice's document is parsed when the API checks its limits, when Submit accepts it,
// when its plan is made, and when monitoring first reads its views: four parses of the
// same text per create, 0.7 ms of YAML each for the CDN example, which a profile of
// scripts/bench.sh put at a tenth of a core at 30 creates a second.
func ParseSpec(doc string) (*spec.Slice, error) {
	if s, ok := parsedSpecs.Get(doc); ok {
		return s, nil
	}
	s, err := spec.ParseSlice([]byte(doc))
	if err != nil {
		return nil, err
	}
	if len(doc) <= maxParsedSpecBytes {
		parsedSpecs.Add(doc, s)
	}
	return s, nil
}

// maxParsedSpecBytes bounds the documents parsedSpecs keeps (the examples are 2-7 KB), so
// that it holds at most a few megabytes whatever tenants send.
const maxParsedSpecBytes = 16 << 10

// parsedSpecs holds the specs parsed last, by their text: the slices being created and
// changed now. A document refused is not kept.
var parsedSpecs = func() *lru.Cache[string, *spec.Slice] {
	c, err := lru.New[string, *spec.Slice](256)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return c
}()

// specOnce parses a view's stored spec at its first use; a view is one read of the
// slice, so its spec is parsed at most once whoever asks.
type specOnce struct {
	once sync.Once
	spec *spec.Slice
	err  error
	// corrupt records a spec that does not parse (Engine.recordCorrupt).
	corrupt func(error)
}

// Spec returns the slice's stored spec, parsed once per view (see StoredSpec).
func (v *View) Spec() (*spec.Slice, error) {
	if v.parsed == nil {
		// A view built by hand (tests): parse every time.
		return StoredSpec(v.Slice)
	}
	v.parsed.once.Do(func() {
		v.parsed.spec, v.parsed.err = StoredSpec(v.Slice)
		if v.parsed.err != nil && v.parsed.corrupt != nil {
			v.parsed.corrupt(v.parsed.err)
		}
	})
	return v.parsed.spec, v.parsed.err
}

// WholeSpec returns the slice's spec with the parts elasticity added, which the
// tenant's document lacks, as a copy the caller may change: the view's parsed spec
// (Spec) is shared by its readers and never changed.
func (v *View) WholeSpec() (*spec.Slice, error) {
	s, err := v.Spec()
	if err != nil {
		return nil, err
	}
	whole := *s
	whole.Parts = slices.Clip(s.Parts) // an append makes a new array
	if s.Lifecycle != nil {
		lc := *s.Lifecycle
		whole.Lifecycle = &lc
	}
	for _, p := range v.Parts {
		if _, ok := s.Part(p.Name); !ok {
			whole.Parts = append(whole.Parts, elasticPart(p))
		}
	}
	return &whole, nil
}

// newView is a view of records just read: whoever finds its spec corrupt first has it
// recorded.
func (e *Engine) newView(sl *store.Slice, parts []*store.Part, links []*store.Link) *View {
	return &View{Slice: sl, Parts: parts, Links: links,
		parsed: &specOnce{corrupt: func(err error) { e.recordCorrupt(sl, err) }}}
}

// recordCorrupt records that a slice's stored spec does not parse: once per slice (its
// events say so across restarts, a set in memory spares reading them again).
func (e *Engine) recordCorrupt(sl *store.Slice, perr error) {
	if _, done := e.corrupt.LoadOrStore(sl.ID, true); done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.noteCorruptSpec(ctx, sl, perr); err != nil {
		e.log.Warn("record a corrupt stored spec", "slice", sl.ID, "error", err)
		e.corrupt.Delete(sl.ID) // the next read tries again
	}
}

// noteCorruptSpec records EvSpecCorrupt for a slice whose stored spec does not parse,
// unless its events already have it.
func (e *Engine) noteCorruptSpec(ctx context.Context, sl *store.Slice, perr error) error {
	evs, err := e.store.Events(ctx, sl.ID)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if ev.Type == EvSpecCorrupt {
			return nil
		}
	}
	e.log.Error("stored spec does not parse", "slice", sl.ID, "error", perr)
	return e.store.AddEvents(ctx, sl.ID, store.Event{Type: EvSpecCorrupt, Message: perr.Error()})
}
