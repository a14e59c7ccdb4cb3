package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"

	"github.com/mamori-dev/mamori/agent/control"
)

// DefaultUdevRulePath is where the package installs the rule.
const DefaultUdevRulePath = "/usr/lib/udev/rules.d/60-mamori-media.rules"

// UdevRuleSHA256 is the SHA-256 of installer/udev/60-mamori-media.rules;
// a test keeps the two in step.
const UdevRuleSHA256 = "a30139aed359096faa642f84b7e99b850995e70225e347c3162527b08e63e100"

// States of the udev rule check.
const (
	UdevRuleOK       = "ok"
	UdevRuleMissing  = "missing"
	UdevRuleModified = "modified"
	UdevRuleMasked   = "masked"
)

// UdevRule is what CheckUdevRule found.
type UdevRule struct {
	State  string // ok, missing, modified, masked
	SHA256 string // of the installed file, when readable
	Detail string // for a person, with what to do (English)
	// Message is Detail as a message of the shared catalogue.
	Message control.Detail
}

func udevRule(state, sha string, msg control.Detail) UdevRule {
	return UdevRule{State: state, SHA256: sha, Detail: msg.English(), Message: msg}
}

// CheckUdevRule checks that the rule at path is the one mamori ships and
// that no file of the same name in overrideDirs masks it (udev lets
// /etc/udev/rules.d and /run/udev/rules.d override /usr/lib/udev/rules.d
// by name).
func CheckUdevRule(path string, overrideDirs []string) UdevRule {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return udevRule(UdevRuleMissing, "", control.D("detail.media.udev-missing", path))
	}
	if err != nil {
		return udevRule(UdevRuleMissing, "", control.D("detail.media.udev-unreadable", path, err.Error()))
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if got != UdevRuleSHA256 {
		return udevRule(UdevRuleModified, got, control.D("detail.media.udev-modified", path, got[:12]))
	}
	for _, dir := range overrideDirs {
		o := filepath.Join(dir, filepath.Base(path))
		if o == path {
			continue
		}
		if _, err := os.Lstat(o); err == nil {
			return udevRule(UdevRuleMasked, got, control.D("detail.media.udev-masked", o))
		}
	}
	return udevRule(UdevRuleOK, got, control.D("detail.media.udev-ok"))
}
