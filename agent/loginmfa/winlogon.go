package loginmfa

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Monitor mode on Windows reports the logons mamori's credential provider
// would have refused: Security log event 4624 ("An account was
// successfully logged on") of a user with no second factor enrolled on
// this terminal, for the logons that go through LogonUI — the only ones
// the provider sees (docs/windows.md). The agent reads the events with
// the Event Log API (winlogon_windows.go) rendered as XML, and
// ParseLogonEvent turns one into a WinLogon. What this cannot see, and
// docs/windows.md says so: logons while the Security log did not record
// them (audit policy "Logon" success off, the log full or cleared), and
// enrolled users who would have typed a wrong code.

// EventLogon is the Security log's successful-logon event.
const EventLogon = 4624

// MaxLogonEventXML bounds one rendered event (a real 4624 is about
// 2–3 KiB).
const MaxLogonEventXML = 64 << 10

// maxLogonField bounds each field kept (names, SIDs, addresses).
const maxLogonField = 256

// WinLogon is one 4624 event.
type WinLogon struct {
	RecordID uint64
	At       time.Time
	// User and Domain are TargetUserName and TargetDomainName; SID is
	// TargetUserSid.
	User, Domain, SID string
	// LogonType: 2 interactive, 7 unlock, 10 remote interactive (RDP),
	// 11 cached interactive, 12 cached remote interactive, 13 cached
	// unlock (and others the provider never sees: 3 network, 5 service…).
	LogonType int
	// Process is LogonProcessName without its padding ("User32" for
	// LogonUI's logons, "seclogo" for runas, "Advapi" for services).
	Process     string
	Workstation string
	IP          string
	// ElevatedSplit: the elevated half of an administrator's split token
	// (ElevatedToken yes and a linked logon); each such logon is also
	// recorded as its non-elevated half, which is the one counted.
	ElevatedSplit bool
}

// ThroughLogonUI reports whether the logon went through LogonUI's
// credential providers — a logon, an unlock or an RDP session's logon
// screen, cached or not, of a user account — so that mamori's provider
// would have asked for a code. runas and UAC (CPUS_CREDUI, not covered),
// services, network logons, and Windows' own accounts (SYSTEM, DWM-n,
// UMFD-n: not S-1-5-21-…) are not.
func (l WinLogon) ThroughLogonUI() bool {
	switch l.LogonType {
	case 2, 7, 10, 11, 12, 13:
	default:
		return false
	}
	return l.Process == "User32" && strings.HasPrefix(l.SID, "S-1-5-21-") && !l.ElevatedSplit
}

// ErrNotLogonEvent is well-formed XML that is not a 4624 event.
var ErrNotLogonEvent = errors.New("not a 4624 logon event")

// eventXML is the part of the Event schema
// (http://schemas.microsoft.com/win/2004/08/events/event) read here.
type eventXML struct {
	XMLName xml.Name `xml:"Event"`
	System  struct {
		EventID     string `xml:"EventID"`
		TimeCreated struct {
			SystemTime string `xml:"SystemTime,attr"`
		} `xml:"TimeCreated"`
		EventRecordID string `xml:"EventRecordID"`
	} `xml:"System"`
	Data []struct {
		Name  string `xml:"Name,attr"`
		Value string `xml:",chardata"`
	} `xml:"EventData>Data"`
}

// ParseLogonEvent parses one event rendered as XML (EvtRender with
// EvtRenderEventXml). It is a pure function over bytes: anything that is
// not a bounded, well-formed 4624 event with a record ID, a time, a
// logon type and a target user is an error, and no field is longer than
// 256 bytes or holds a control character.
func ParseLogonEvent(b []byte) (WinLogon, error) {
	if len(b) > MaxLogonEventXML {
		return WinLogon{}, fmt.Errorf("logon event: %d bytes, more than %d", len(b), MaxLogonEventXML)
	}
	if !utf8.Valid(b) {
		return WinLogon{}, errors.New("logon event: not UTF-8")
	}
	var e eventXML
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	d.Entity = nil // only XML's five entities; no DTD is read
	if err := d.Decode(&e); err != nil {
		return WinLogon{}, fmt.Errorf("logon event: %w", err)
	}
	// Nothing but white space may follow the one event.
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return WinLogon{}, fmt.Errorf("logon event: after the event: %w", err)
		}
		if cd, ok := tok.(xml.CharData); !ok || len(bytes.TrimSpace(cd)) != 0 {
			return WinLogon{}, errors.New("logon event: more than one event")
		}
	}
	if strings.TrimSpace(e.System.EventID) != strconv.Itoa(EventLogon) {
		return WinLogon{}, ErrNotLogonEvent
	}
	var l WinLogon
	var err error
	if l.RecordID, err = strconv.ParseUint(strings.TrimSpace(e.System.EventRecordID), 10, 64); err != nil || l.RecordID == 0 {
		return WinLogon{}, errors.New("logon event: no EventRecordID")
	}
	if l.At, err = time.Parse(time.RFC3339Nano, e.System.TimeCreated.SystemTime); err != nil {
		return WinLogon{}, errors.New("logon event: no TimeCreated")
	}
	l.At = l.At.UTC()
	fields := map[string]string{}
	for _, dt := range e.Data {
		if _, dup := fields[dt.Name]; dup {
			return WinLogon{}, fmt.Errorf("logon event: field %.40q twice", dt.Name)
		}
		v := strings.TrimSpace(dt.Value)
		if len(v) > maxLogonField {
			return WinLogon{}, fmt.Errorf("logon event: field %.40q longer than %d bytes", dt.Name, maxLogonField)
		}
		for _, r := range v {
			if r < 0x20 || r == 0x7f {
				return WinLogon{}, fmt.Errorf("logon event: control character in %.40q", dt.Name)
			}
		}
		fields[dt.Name] = v
	}
	l.User, l.Domain, l.SID = fields["TargetUserName"], fields["TargetDomainName"], fields["TargetUserSid"]
	if l.User == "" || l.User == "-" {
		return WinLogon{}, errors.New("logon event: no TargetUserName")
	}
	if l.LogonType, err = strconv.Atoi(fields["LogonType"]); err != nil || l.LogonType < 0 || l.LogonType > 99 {
		return WinLogon{}, errors.New("logon event: no LogonType")
	}
	l.Process = fields["LogonProcessName"]
	l.Workstation, l.IP = dash(fields["WorkstationName"]), dash(fields["IpAddress"])
	// %%1842 is "Yes" in the Security log's message table.
	l.ElevatedSplit = fields["ElevatedToken"] == "%%1842" && fields["TargetLinkedLogonId"] != "" && fields["TargetLinkedLogonId"] != "0x0"
	return l, nil
}

// dash: the Security log writes "-" for an empty field.
func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}
