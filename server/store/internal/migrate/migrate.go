// Package migrate reads a backend's embedded schema migrations. Each
// backend applies them itself (the locking differs); the numbering rules
// are shared.
package migrate

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Migration is one schema step, from a file named NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads every *.sql file in dir of fsys, ordered by version. Versions
// must run 1, 2, 3… without gaps or duplicates, so a missing file is caught
// at build-test time rather than on a customer's database.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: want version %d (versions must run 1, 2, 3… without gaps)", m.Version, m.Name, i+1)
		}
	}
	return ms, nil
}

// Pending returns the migrations after the applied versions. It refuses a
// database that has a version this binary does not know: an older server
// must not write to a schema a newer one has changed.
func Pending(all []Migration, applied []int) ([]Migration, error) {
	done := make(map[int]bool, len(applied))
	for _, v := range applied {
		if v > len(all) {
			return nil, fmt.Errorf("database schema version %d is newer than this server knows (%d): upgrade mamori-server", v, len(all))
		}
		done[v] = true
	}
	var p []Migration
	for _, m := range all {
		if !done[m.Version] {
			p = append(p, m)
		}
	}
	return p, nil
}
