package sdk

import (
	"context"
	"errors"
	"fmt"
)

// Code classifies an error so the core can act on it. The values are those of gRPC
// status codes, and errors cross the plugin boundary with their code intact.
type Code uint32

// Error codes a plugin returns. Any other error reaches the core as CodeUnknown.
const (
	CodeOK                 Code = 0
	CodeCanceled           Code = 1
	CodeUnknown            Code = 2
	CodeInvalidArgument    Code = 3
	CodeDeadlineExceeded   Code = 4
	CodeNotFound           Code = 5
	CodeAlreadyExists      Code = 6
	CodePermissionDenied   Code = 7
	CodeResourceExhausted  Code = 8
	CodeFailedPrecondition Code = 9
	CodeAborted            Code = 10
	CodeUnimplemented      Code = 12
	CodeInternal           Code = 13
	CodeUnavailable        Code = 14
)

var codeNames = map[Code]string{
	CodeOK: "OK", CodeCanceled: "Canceled", CodeUnknown: "Unknown",
	CodeInvalidArgument: "InvalidArgument", CodeDeadlineExceeded: "DeadlineExceeded",
	CodeNotFound: "NotFound", CodeAlreadyExists: "AlreadyExists",
	CodePermissionDenied: "PermissionDenied", CodeResourceExhausted: "ResourceExhausted",
	CodeFailedPrecondition: "FailedPrecondition", CodeAborted: "Aborted",
	CodeUnimplemented: "Unimplemented", CodeInternal: "Internal", CodeUnavailable: "Unavailable",
}

// String returns the code's gRPC name.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// Error is an error with a [Code].
type Error struct {
	// Code classifies the error.
	Code Code
	// Message says what went wrong, naming the field or resource concerned.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *[Error] with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: that of the first *[Error] in its chain, CodeCanceled
// or CodeDeadlineExceeded for context errors, CodeOK for nil, else CodeUnknown.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return CodeUnknown
}

// IsNotFound reports whether err has CodeNotFound.
func IsNotFound(err error) bool { return CodeOf(err) == CodeNotFound }
