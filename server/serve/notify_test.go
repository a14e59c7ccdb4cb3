package serve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWebhookURL: incidents go to an https:// webhook, or to plain http://
// only on this machine; anything else is refused at start.
func TestWebhookURL(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for url, ok := range map[string]bool{
		"https://hooks.example.lg.jp/mamori": true,
		"http://127.0.0.1:8080/hook":         true,
		"http://[::1]:8080/hook":             true,
		"http://localhost/hook":              true,
		"http://hooks.example.lg.jp/mamori":  false,
		"http://10.0.0.5/hook":               false,
		"ftp://127.0.0.1/x":                  false,
		"https:///nohost":                    false,
	} {
		_, err := Watch{Webhook: url, WebhookSecretFile: secret}.Channels()
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", url, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--notify-webhook") {
			t.Errorf("%s: error does not name the flag: %v", url, err)
		}
	}
}
