package web_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

// TestBenchCacheRebuildsStale: the benchmarks' cached data set is reused
// only when its schema is the current one; a file of an older schema (a
// migration missing from it) under the current name is rebuilt, not
// migrated in place or used as it is.
func TestBenchCacheRebuildsStale(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx := context.Background()
	sz := benchSize{devices: 10, events: 100}
	path, err := cachedBenchDB(ctx, sz)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != benchFile(sz) || !benchSchemaCurrent(ctx, path) {
		t.Fatalf("built %s: not the current schema", path)
	}
	// Reused as it is: a marker table survives.
	exec := func(q string) {
		t.Helper()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE TABLE bench_marker (x INTEGER)")
	if p, err := cachedBenchDB(ctx, sz); err != nil || p != path || !hasTable(t, p, "bench_marker") {
		t.Fatalf("a current cache was not reused: %s, %v", p, err)
	}
	// An older schema: the newest migration is not recorded.
	exec("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
	if benchSchemaCurrent(ctx, path) {
		t.Fatal("a file missing a migration counts as current")
	}
	p, err := cachedBenchDB(ctx, sz)
	if err != nil {
		t.Fatal(err)
	}
	if p != path || !benchSchemaCurrent(ctx, p) || hasTable(t, p, "bench_marker") {
		t.Fatalf("the stale cache was not rebuilt (%s)", p)
	}
	// The name changes with the statements that fill the data set.
	if benchFile(sz) == benchFile(benchSize{devices: 10, events: 200}) {
		t.Error("two data sets share a file name")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "building-"+benchFile(sz))); !os.IsNotExist(err) {
		t.Errorf("the building file is left behind: %v", err)
	}
}

func hasTable(t *testing.T, path, name string) bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
