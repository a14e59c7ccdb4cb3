package storetest

import (
	"testing"
	"time"

	"github.com/mamori-dev/mamori/server/store"
)

// testExceptions: create, list by device/group and active-at, revoke once,
// a duplicate ID refused, times in UTC, DeviceGroup.
func testExceptions(t *testing.T, st store.Store) {
	f := newFixture(t, st)
	ctx := t.Context()
	dev := f.enroll("m-exc", "exc-host", t0).Device
	_, err := st.SetDeviceGroup(ctx, dev.ID, "市民課")
	must(t, err)
	g, err := st.DeviceGroup(ctx, dev.ID)
	must(t, err)
	if g != "市民課" {
		t.Errorf("DeviceGroup %q", g)
	}
	_, err = st.DeviceGroup(ctx, "ghost")
	wantErr(t, "DeviceGroup of an unknown device", err, store.ErrNotFound)

	mk := func(id, device, group string, created time.Time, ttl time.Duration) store.Exception {
		return store.Exception{ID: id, Vendor: "0781", Product: "5581", Serial: "SER-" + id, User: "tanaka",
			DeviceID: device, Group: group, Reason: "監査資料の受け渡し <script>", CreatedBy: "op-1",
			CreatedAt: created, ExpiresAt: created.Add(ttl)}
	}
	byDevice := mk("e1", dev.ID, "", t0, time.Hour)
	byGroup := mk("e2", "", "市民課", t0.Add(time.Second), 2*time.Hour)
	other := mk("e3", "", "税務課", t0.Add(2*time.Second), time.Hour)
	short := mk("e4", dev.ID, "", t0.Add(3*time.Second), time.Minute)
	for _, e := range []store.Exception{byDevice, byGroup, other, short} {
		must(t, st.CreateException(ctx, e))
	}
	wantErr(t, "duplicate exception ID", st.CreateException(ctx, byDevice), store.ErrConflict)

	ids := func(es []store.Exception) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	all, err := st.ListExceptions(ctx, store.ExceptionFilter{})
	must(t, err)
	diff(t, "all, newest first", []string{"e4", "e3", "e2", "e1"}, ids(all))
	want := byDevice
	want.CreatedAt, want.ExpiresAt = t0.UTC().Truncate(time.Microsecond), t0.Add(time.Hour).UTC().Truncate(time.Microsecond)
	diff(t, "stored exception", want, all[3])

	mine, err := st.ListExceptions(ctx, store.ExceptionFilter{DeviceID: dev.ID, Group: "市民課", ActiveAt: t0.Add(10 * time.Minute)})
	must(t, err)
	diff(t, "active for the device and its group", []string{"e2", "e1"}, ids(mine))
	grp, err := st.ListExceptions(ctx, store.ExceptionFilter{Group: "税務課"})
	must(t, err)
	diff(t, "by group", []string{"e3"}, ids(grp))

	r, err := st.RevokeException(ctx, "e2", "op-2", "終了", t0.Add(5*time.Minute))
	must(t, err)
	if r.RevokedBy != "op-2" || r.RevokeReason != "終了" || !r.RevokedAt.Equal(t0.Add(5*time.Minute).Truncate(time.Microsecond)) || r.RevokedAt.Location() != time.UTC {
		t.Errorf("revoked: %+v", r)
	}
	_, err = st.RevokeException(ctx, "e2", "op-2", "again", t0.Add(6*time.Minute))
	wantErr(t, "revoke twice", err, store.ErrConflict)
	_, err = st.RevokeException(ctx, "ghost", "op-2", "x", t0)
	wantErr(t, "revoke unknown", err, store.ErrNotFound)
	mine, err = st.ListExceptions(ctx, store.ExceptionFilter{DeviceID: dev.ID, Group: "市民課", ActiveAt: t0.Add(10 * time.Minute)})
	must(t, err)
	diff(t, "active after revoke", []string{"e1"}, ids(mine))
	lim, err := st.ListExceptions(ctx, store.ExceptionFilter{Limit: 2})
	must(t, err)
	diff(t, "limit", []string{"e4", "e3"}, ids(lim))
}

// testLedger: empty before the first import; an import replaces the whole
// ledger; a duplicate asset ID refuses the import and keeps the old one.
func testLedger(t *testing.T, st store.Store) {
	ctx := t.Context()
	l, err := st.Ledger(ctx)
	must(t, err)
	if len(l.Entries) != 0 || !l.ImportedAt.IsZero() {
		t.Errorf("empty store has a ledger: %+v", l)
	}
	first := store.LedgerImport{ImportedBy: "op-1", ImportedAt: t0, Entries: []store.LedgerEntry{
		{AssetID: "A-002", Hostname: "pc-002", Serial: "S2", Group: "市民課", Location: "本庁舎2F", Note: "<b>x</b>"},
		{AssetID: "A-001", Hostname: "pc-001", Serial: "S1", Group: "税務課", Location: "本庁舎3F"},
	}}
	must(t, st.ReplaceLedger(ctx, first))
	l, err = st.Ledger(ctx)
	must(t, err)
	diff(t, "ledger", store.LedgerImport{ImportedBy: "op-1", ImportedAt: t0.UTC().Truncate(time.Microsecond),
		Entries: []store.LedgerEntry{first.Entries[1], first.Entries[0]}}, l)

	bad := store.LedgerImport{ImportedBy: "op-2", ImportedAt: t0.Add(time.Hour), Entries: []store.LedgerEntry{
		{AssetID: "B-1", Hostname: "h"}, {AssetID: "B-1", Hostname: "h2"}}}
	wantErr(t, "duplicate asset ID", st.ReplaceLedger(ctx, bad), store.ErrConflict)
	l, err = st.Ledger(ctx)
	must(t, err)
	if len(l.Entries) != 2 || l.ImportedBy != "op-1" {
		t.Errorf("a refused import changed the ledger: %+v", l)
	}
	second := store.LedgerImport{ImportedBy: "op-2", ImportedAt: t0.Add(time.Hour), Entries: []store.LedgerEntry{{AssetID: "C-1", Hostname: "pc-c"}}}
	must(t, st.ReplaceLedger(ctx, second))
	l, err = st.Ledger(ctx)
	must(t, err)
	if len(l.Entries) != 1 || l.Entries[0].AssetID != "C-1" || l.ImportedBy != "op-2" {
		t.Errorf("second import: %+v", l)
	}
}
