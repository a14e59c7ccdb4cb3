package facts

import "testing"

// FuzzParseMachineID: any file content; an accepted ID is 32 lower-case
// hex digits and parses to itself.
func FuzzParseMachineID(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123456789ABCDEF\n", "", "00000000000000000000000000000000", " 0123456789abcdef0123456789abcdef \n\n", "é123456789abcdef0123456789abcde", "uninitialized\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseMachineID(b)
		if err != nil {
			return
		}
		if len(id) != 32 {
			t.Fatalf("accepted %q of length %d", id, len(id))
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				t.Fatalf("accepted %q", id)
			}
		}
		if again, err := ParseMachineID([]byte(id)); err != nil || again != id {
			t.Fatalf("%q parses to %q, %v", id, again, err)
		}
	})
}
