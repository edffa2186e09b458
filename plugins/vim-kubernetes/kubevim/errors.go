package kubevim

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/necos/necos/sdk"
)

// apiError gives an API server error the sdk code the core acts on, keeping the server's
// message: "what: message".
func apiError(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	code := sdk.CodeUnknown
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// The part is being deleted under the call: retrying after the delete helps.
		code = sdk.CodeAborted
	case apierrors.IsNotFound(err):
		code = sdk.CodeNotFound
	case apierrors.IsAlreadyExists(err):
		code = sdk.CodeAlreadyExists
	case apierrors.IsForbidden(err):
		code = sdk.CodePermissionDenied
	case apierrors.IsUnauthorized(err):
		code = sdk.CodePermissionDenied
	case apierrors.IsConflict(err):
		code = sdk.CodeAborted
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		code = sdk.CodeInvalidArgument
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err):
		code = sdk.CodeUnavailable
	default:
		var st apierrors.APIStatus
		if !errors.As(err, &st) {
			// Not an answer from the server: the connection failed.
			code = sdk.CodeUnavailable
		}
	}
	return sdk.Errorf(code, "%s: %v", what, err)
}
