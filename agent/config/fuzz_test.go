package config

import "testing"

// The config file comes from an installer or config management; whatever
// it holds, Parse must answer with a config or an error, never a panic, and
// what it accepts must validate or be refused by Validate.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"servers":["mamori.example.lg.jp:8443"],"token":"mme_x","ca_fingerprint":"00"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"servers": 5}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := DefaultConfig()
		if err := Parse(b, &c); err != nil {
			return
		}
		_ = c.Validate()
	})
}
