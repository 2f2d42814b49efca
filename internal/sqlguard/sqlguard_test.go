package sqlguard

import (
	"testing"
)

// TestNoSQLBuiltFromValues runs the guard over the whole project.
func TestNoSQLBuiltFromValues(t *testing.T) {
	vs, err := CheckTree("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Errorf("%s", v)
	}
}

// TestGuardCatchesViolations proves the guard fails on what it must catch and
// passes what is allowed.
func TestGuardCatchesViolations(t *testing.T) {
	f := func(src string, want int) {
		t.Helper()
		vs, err := CheckFile("x.go", "package x\n"+src)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != want {
			t.Errorf("%d violations in %q, want %d: %v", len(vs), src, want, vs)
		}
	}
	f(`func a() { conn.Query(ctx, "SELECT * FROM t WHERE id = '" + id + "'") }`, 1)
	f(`func a() { conn.Query(ctx, "SELECT * FROM t WHERE id = " + id) }`, 1)
	f(`func a() { conn.Exec(ctx, fmt.Sprintf("DELETE FROM t WHERE id = %q", id)) }`, 1)
	f(`func a() { conn.QueryRow(ctx, "SELECT * FROM t LIMIT " + strconv.Itoa(n)) }`, 1)
	f(`func a() { conn.Query(ctx, base + " WHERE a IN (" + list + ")") }`, 1)
	f(`func a() { conn.Query(ctx, "SELECT * FROM t WHERE id = ?", id) }`, 0)
	f(`func a() { conn.PrepareBatch(ctx, "INSERT INTO " + table + " (" + columns + ")") }`, 0)
	f(`func a() { conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS " + db) }`, 0)
	f(`func a() { conn.Query(ctx, "SELECT version FROM " + database + ".schema_migrations GROUP BY version") }`, 0)
}
