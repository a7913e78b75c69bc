// Package pgtest gives tests a fresh, empty PostgreSQL schema on the local
// server, so runs never see each other's rows and can share one database.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// DefaultURL is the local test server (trust auth, database test).
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL is the server tests use: $STEWARD_TEST_POSTGRES or DefaultURL.
func BaseURL() string {
	if u := os.Getenv("STEWARD_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultURL
}

// URL creates a new schema, returns a URL whose connections use it, and
// drops it when the test ends. Without a reachable server the test is
// skipped, except under CI=true, where that is a failure.
func URL(tb testing.TB) string {
	tb.Helper()
	base := BaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("PostgreSQL at %s is required under CI=true: %v", base, err)
		}
		tb.Skipf("PostgreSQL at %s is not reachable (%v); start it or set STEWARD_TEST_POSTGRES", base, err)
	}
	defer db.Close()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		tb.Fatalf("creating schema: %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
	})
	return WithSchema(base, schema)
}

// WithSchema returns base with its connections' search_path set to schema.
func WithSchema(base, schema string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
