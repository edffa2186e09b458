package store

import (
	"context"
	"strings"
)

func benchReleaseSlice(ctx context.Context, s *Store, slice string) error {
	return s.ReleaseVNIs(ctx, func(h string) bool { return strings.HasPrefix(h, slice+"/") })
}
