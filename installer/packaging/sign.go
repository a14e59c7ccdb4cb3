package packaging

import (
	"context"
	"fmt"
	"os"
)

// Sign Authenticode-signs in (an .exe or .msi) into out with osslsigncode,
// SHA-256, with the PEM certificate chain and key given. in and out must
// differ.
func Sign(ctx context.Context, cert, key, in, out string) error {
	tool, err := lookTool("osslsigncode", "osslsigncode")
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	for what, p := range map[string]string{"signing certificate": cert, "signing key": key, "file to sign": in} {
		if err := needFile(what, p); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	os.Remove(out) // osslsigncode refuses to overwrite
	if err := run(ctx, tool, "sign", "-certs", cert, "-key", key, "-h", "sha256", "-n", "mamori agent",
		"-i", Homepage, "-in", in, "-out", out); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return nil
}

// Verify checks out's Authenticode signature against the CA file.
func Verify(ctx context.Context, caFile, path string) error {
	tool, err := lookTool("osslsigncode", "osslsigncode")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := run(ctx, tool, "verify", "-CAfile", caFile, "-in", path); err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	return nil
}
