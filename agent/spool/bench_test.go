package spool

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func benchSpool(b *testing.B) *Spool {
	b.Helper()
	opt := testOptions(b)
	opt.Logger = nil
	opt.MaxBytes, opt.MaxRecords = 1<<40, 1<<30
	return mustOpen(b, b.TempDir(), opt)
}

// BenchmarkAppend measures one Append call (one fsync) of n events.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			s := benchSpool(b)
			evs := make([]*mamoriv1.Event, n)
			i := 0
			for b.Loop() {
				for j := range evs {
					evs[j] = testEvent(fmt.Sprintf("ev-%d-%d", i, j), "usb")
				}
				i++
				if err := s.Append(context.Background(), evs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAppendParallel measures concurrent one-event Appends, which share
// fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	s := benchSpool(b)
	b.SetParallelism(8) // 8 × GOMAXPROCS goroutines
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := testEvent(fmt.Sprintf("ev-%d", next.Add(1)), "usb")
			if err := s.Append(context.Background(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDrop measures counting one refused event durably (the spool is
// at its record limit): the drop counter written and fsync'd.
func BenchmarkDrop(b *testing.B) {
	opt := testOptions(b)
	opt.Logger = nil
	opt.MaxRecords = minMaxRecords
	s := mustOpen(b, b.TempDir(), opt)
	for i := range minMaxRecords - reserveRecords {
		mustAppend(b, s, testEvent(fmt.Sprintf("fill-%d", i), "usb"))
	}
	i := 0
	for b.Loop() {
		i++
		if err := s.Append(context.Background(), testEvent(fmt.Sprintf("ev-%d", i), "usb")); err != ErrFull {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "drops/s")
}
