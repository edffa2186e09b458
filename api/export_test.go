package api

import (
	"net/http"
	"time"
)

// SetHeartbeat changes how often event streams of h send a heartbeat, so that tests
// need not wait 15 seconds for one.
func SetHeartbeat(h http.Handler, d time.Duration) { h.(*Handler).heartbeat = d }
