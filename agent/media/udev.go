package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	Detail string // for a person, with what to do
}

// CheckUdevRule checks that the rule at path is the one mamori ships and
// that no file of the same name in overrideDirs masks it (udev lets
// /etc/udev/rules.d and /run/udev/rules.d override /usr/lib/udev/rules.d
// by name).
func CheckUdevRule(path string, overrideDirs []string) UdevRule {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return UdevRule{State: UdevRuleMissing, Detail: "udev rule " + path + " missing: removable media are writable while the agent is not running; reinstall the mamori package"}
	}
	if err != nil {
		return UdevRule{State: UdevRuleMissing, Detail: fmt.Sprintf("udev rule %s unreadable: %v", path, err)}
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if got != UdevRuleSHA256 {
		return UdevRule{State: UdevRuleModified, SHA256: got, Detail: "udev rule " + path + " modified (sha256 " + got[:12] + "…): reinstall the mamori package"}
	}
	for _, dir := range overrideDirs {
		o := filepath.Join(dir, filepath.Base(path))
		if o == path {
			continue
		}
		if _, err := os.Lstat(o); err == nil {
			return UdevRule{State: UdevRuleMasked, SHA256: got, Detail: "udev rule masked by " + o + ": remove that file"}
		}
	}
	return UdevRule{State: UdevRuleOK, SHA256: got, Detail: "udev rule in place"}
}
