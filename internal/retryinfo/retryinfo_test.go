package retryinfo

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDelayRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		want    time.Duration
		wantOK  bool
		wantWay time.Duration // Wait(err, 100ms, 0.5)
	}{
		{"hint", Error(codes.ResourceExhausted, 2*time.Second, "busy"), 2 * time.Second, true, 2100 * time.Millisecond},
		{"hint capped", Error(codes.Unavailable, time.Hour, "busy"), MaxDelay, true, MaxDelay + MaxDelay/20},
		{"negative hint", Error(codes.Unavailable, -time.Second, "busy"), 0, true, 0},
		{"status without hint", status.Error(codes.Unavailable, "down"), 0, false, 100 * time.Millisecond},
		{"not a status", errors.New("plain"), 0, false, 100 * time.Millisecond},
		{"nil", nil, 0, false, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Delay(tc.err)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Delay = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
			if w := Wait(tc.err, 100*time.Millisecond, 0.5); w != tc.wantWay {
				t.Errorf("Wait = %v, want %v", w, tc.wantWay)
			}
		})
	}
	if c := status.Code(Error(codes.ResourceExhausted, time.Second, "busy")); c != codes.ResourceExhausted {
		t.Errorf("code %v, want ResourceExhausted", c)
	}
}
