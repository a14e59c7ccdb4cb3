// Package retryinfo carries "try again after" hints in gRPC statuses: the
// server attaches one when it refuses a call to protect itself (enrolment
// admission), and clients (the agent, mamori-loadgen) read it and wait at
// least that long before the next attempt, with jitter on top so that a
// refused crowd does not come back in step.
//
// The hint is the standard google.rpc.RetryInfo status detail, so any gRPC
// client can read it.
package retryinfo

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// MaxDelay bounds what a client accepts from a server: a hint beyond it
// is read as MaxDelay, so a confused server cannot park its fleet.
const MaxDelay = 5 * time.Minute

// Error returns a status error with code, message and a RetryInfo detail
// asking the caller to wait at least delay.
func Error(code codes.Code, delay time.Duration, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
		st = d
	}
	return st.Err()
}

// Delay returns the wait a server asked for in err, capped at MaxDelay,
// and whether err carried one.
func Delay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return 0, false
	}
	for _, d := range st.Details() {
		ri, ok := d.(*errdetails.RetryInfo)
		if !ok || ri.GetRetryDelay().CheckValid() != nil {
			continue
		}
		return min(max(ri.GetRetryDelay().AsDuration(), 0), MaxDelay), true
	}
	return 0, false
}

// Jitter is the share of a hint a client adds at random (r in [0,1)).
const Jitter = 0.1

// Wait is how long a client waits before trying again: with a hint, the
// hint plus up to Jitter of it (the server schedules refused callers one
// after another, so the client's own exponential back-off would only
// leave the server idle); without one, the client's own backoff.
func Wait(err error, backoff time.Duration, r float64) time.Duration {
	d, ok := Delay(err)
	if !ok {
		return backoff
	}
	return d + time.Duration(r*Jitter*float64(d))
}
