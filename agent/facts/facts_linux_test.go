package facts

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	mamoriv1 "github.com/mamori-dev/mamori/proto/mamori/v1"
)

func TestCollectFixtures(t *testing.T) {
	tests := []struct {
		name    string
		root    string
		want    *mamoriv1.DeviceFacts
		wantErr error
	}{
		{"debian12", "testdata/debian12", &mamoriv1.DeviceFacts{
			Hostname: "yakuba-t001", Os: "linux", OsVersion: "Debian GNU/Linux 12 (bookworm)",
			Kernel: "6.1.0-18-amd64", AgentVersion: "v1.0.0", MachineId: "0123456789abcdef0123456789abcdef",
			TpmPresent: true, KeyStorage: "file",
		}, nil},
		{"dbus machine-id, usr/lib os-release, no tpm", "testdata/dbusonly", &mamoriv1.DeviceFacts{
			Hostname: "t002", Os: "linux", OsVersion: "Rocky Linux 9.3 (Blue Onyx)",
			Kernel: "5.14.0-362.el9.x86_64", AgentVersion: "v1.0.0", MachineId: "fedcba9876543210fedcba9876543210",
			KeyStorage: "file",
		}, nil},
		{"empty tree", "testdata/empty", &mamoriv1.DeviceFacts{
			Os: "linux", OsVersion: "Linux", AgentVersion: "v1.0.0", KeyStorage: "file",
		}, ErrNoMachineID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Collect(t.Context(), Options{Root: tt.root, AgentVersion: "v1.0.0"})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
