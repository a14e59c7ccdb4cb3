package policy

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

// A policy file an officer edits by hand goes through protojson and
// Validate; neither may panic, and what Validate accepts is bounded.
func FuzzValidate(f *testing.F) {
	b, _ := protojson.Marshal(Default())
	f.Add(b)
	f.Add([]byte(`{"controls":{"media":{"mode":"MODE_ENFORCE","settings":{"usb":"read-only"}}},"report_interval":"5s","max_report_age":"10s"}`))
	f.Add([]byte(`{"report_interval":"-1s"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p mamoriv1.Policy
		if protojson.Unmarshal(b, &p) != nil {
			return
		}
		if Validate(&p) != nil {
			return
		}
		if len(p.Controls) > MaxControls || ReportInterval(&p) < MinReportInterval || ReportInterval(&p) > MaxReportInterval {
			t.Fatalf("accepted an out-of-bounds policy: %v", &p)
		}
	})
}
