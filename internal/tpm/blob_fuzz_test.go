package tpm_test

import (
	"bytes"
	"testing"

	"github.com/mamori-dev/mamori/internal/tpm"
)

// FuzzDecodeBlob: key.tpm is read from disk at every start; any content
// is refused or decodes to a blob that encodes and decodes to itself.
func FuzzDecodeBlob(f *testing.F) {
	good, _ := tpm.Blob{Public: []byte{0, 1, 2}, Private: []byte{3, 4}}.Encode()
	for _, s := range [][]byte{good, nil, []byte("{}"), []byte(`{"public":"AA==","private":""}`), []byte(`{"public":"!!","private":"AA=="}`), []byte(`[1,2]`), bytes.Repeat([]byte("["), 10000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bl, err := tpm.DecodeBlob(b)
		if err != nil {
			return
		}
		if len(bl.Public) == 0 || len(bl.Private) == 0 {
			t.Fatalf("accepted a blob without both parts: %+v", bl)
		}
		enc, err := bl.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := tpm.DecodeBlob(enc)
		if err != nil || !bytes.Equal(again.Public, bl.Public) || !bytes.Equal(again.Private, bl.Private) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, bl)
		}
	})
}
