package influx

import (
	"context"
	"errors"
	"net/http"
	"strings"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/necos/necos/sdk"
)

// classify maps an error of the InfluxDB client to the SDK code the core acts on, and
// says whether trying again later may succeed.
func classify(err error) (code sdk.Code, transient bool) {
	var he *http2.Error
	if !errors.As(err, &he) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return sdk.CodeUnavailable, true
		case errors.Is(err, context.Canceled):
			return sdk.CodeCanceled, false
		}
		return sdk.CodeUnknown, false
	}
	msg := strings.ToLower(he.Error())
	switch {
	case he.StatusCode == 0: // no answer: refused, reset, timed out
		return sdk.CodeUnavailable, true
	case he.StatusCode == http.StatusTooManyRequests || he.StatusCode == http.StatusServiceUnavailable ||
		he.StatusCode == http.StatusBadGateway || he.StatusCode == http.StatusGatewayTimeout:
		return sdk.CodeUnavailable, true
	case he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden:
		return sdk.CodePermissionDenied, false
	// InfluxDB 1.8 answers a missing database with 404 on write and 500 on a Flux query.
	case he.StatusCode == http.StatusNotFound, strings.Contains(msg, "no database"),
		strings.Contains(msg, "database not found"), strings.Contains(msg, "invalid retention policy"),
		strings.Contains(msg, "retention policy not found"):
		return sdk.CodeFailedPrecondition, false
	case he.StatusCode == http.StatusRequestEntityTooLarge:
		return sdk.CodeResourceExhausted, false
	case he.StatusCode == http.StatusBadRequest:
		return sdk.CodeInvalidArgument, false
	case he.StatusCode >= 500:
		// A write InfluxDB could not finish (timeout, cache full) may pass later.
		return sdk.CodeUnavailable, true
	}
	return sdk.CodeUnknown, false
}

// wrap turns a client error into an *sdk.Error with classify's code and context.
func wrap(err error, format string, args ...any) error {
	code, _ := classify(err)
	return sdk.Errorf(code, format+": %v", append(args, err)...)
}
