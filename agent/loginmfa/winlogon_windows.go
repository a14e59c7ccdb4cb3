package loginmfa

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/windows"
)

// SecurityLog is LogonLog on the local Security event log, through the
// Event Log API (wevtapi.dll; x/sys/windows has no bindings for it). The
// agent runs as LocalSystem, which may read the Security log.
type SecurityLog struct{}

var (
	wevtapi        = windows.NewLazySystemDLL("wevtapi.dll")
	procEvtQuery   = wevtapi.NewProc("EvtQuery")
	procEvtNext    = wevtapi.NewProc("EvtNext")
	procEvtRender  = wevtapi.NewProc("EvtRender")
	procEvtClose   = wevtapi.NewProc("EvtClose")
	errNoMoreItems = windows.Errno(259) // ERROR_NO_MORE_ITEMS
)

const (
	evtQueryChannelPath      = 0x1
	evtQueryForwardDirection = 0x100
	evtQueryReverseDirection = 0x200
	evtRenderEventXML        = 1
	evtNextTimeoutMS         = 2000
)

// Latest is the record ID of the newest 4624 event.
func (SecurityLog) Latest(ctx context.Context) (uint64, error) {
	xs, err := query(ctx, fmt.Sprintf("*[System[EventID=%d]]", EventLogon), evtQueryReverseDirection, 1)
	if err != nil || len(xs) == 0 {
		return 0, err
	}
	l, err := ParseLogonEvent(xs[0])
	if err != nil {
		return 0, fmt.Errorf("newest logon event: %w", err)
	}
	return l.RecordID, nil
}

// After returns up to max 4624 events with a record ID above after,
// oldest first.
func (SecurityLog) After(ctx context.Context, after uint64, max int) ([][]byte, error) {
	q := fmt.Sprintf("*[System[EventID=%d and EventRecordID>%s]]", EventLogon, strconv.FormatUint(after, 10))
	return query(ctx, q, evtQueryForwardDirection, max)
}

func query(ctx context.Context, xpath string, dir uint32, max int) ([][]byte, error) {
	if err := wevtapi.Load(); err != nil {
		return nil, fmt.Errorf("Security log: %w", err)
	}
	ch, _ := windows.UTF16PtrFromString("Security")
	q, _ := windows.UTF16PtrFromString(xpath)
	rs, _, e := procEvtQuery.Call(0, uintptr(unsafe.Pointer(ch)), uintptr(unsafe.Pointer(q)), uintptr(evtQueryChannelPath|dir))
	if rs == 0 {
		if en, ok := e.(windows.Errno); ok && en == 0 {
			// wine's wevtapi is a stub that fails without saying why.
			return nil, errors.New("Security log: EvtQuery failed without an error code (no Event Log service here)")
		}
		return nil, fmt.Errorf("Security log: EvtQuery: %w (the agent must run as LocalSystem)", e)
	}
	defer procEvtClose.Call(rs) //nolint:errcheck
	var out [][]byte
	var hs [16]uintptr
	for len(out) < max {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		want := min(len(hs), max-len(out))
		var n uint32
		ok, _, e := procEvtNext.Call(rs, uintptr(want), uintptr(unsafe.Pointer(&hs[0])), evtNextTimeoutMS, 0, uintptr(unsafe.Pointer(&n)))
		if ok == 0 {
			if errors.Is(e, errNoMoreItems) {
				break
			}
			return out, fmt.Errorf("Security log: EvtNext: %w", e)
		}
		for _, h := range hs[:n] {
			x, err := render(h)
			procEvtClose.Call(h) //nolint:errcheck
			if err != nil {
				return out, err
			}
			out = append(out, x)
		}
	}
	return out, nil
}

// render returns one event as UTF-8 XML, bounded by MaxLogonEventXML.
func render(h uintptr) ([]byte, error) {
	buf := make([]uint16, 4096)
	for {
		var used, props uint32
		ok, _, e := procEvtRender.Call(0, h, evtRenderEventXML, uintptr(len(buf)*2), uintptr(unsafe.Pointer(&buf[0])),
			uintptr(unsafe.Pointer(&used)), uintptr(unsafe.Pointer(&props)))
		if ok != 0 {
			n := int(used / 2)
			if n > len(buf) {
				n = len(buf)
			}
			for n > 0 && buf[n-1] == 0 {
				n--
			}
			return []byte(windows.UTF16ToString(buf[:n])), nil
		}
		if !errors.Is(e, windows.ERROR_INSUFFICIENT_BUFFER) || int(used) > 2*MaxLogonEventXML || int(used)/2 <= len(buf) {
			return nil, fmt.Errorf("Security log: EvtRender: %w", e)
		}
		buf = make([]uint16, used/2+1)
	}
}
