// Package natstest gives tests a NATS server with JetStream, the local one
// the scale-out tests share, and a bus prefix of their own on it.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultURL is the local server.
const DefaultURL = "nats://127.0.0.1:4222"

// URL is the server tests use: $STEWARD_TEST_NATS_URL or DefaultURL.
func URL() string {
	if u := os.Getenv("STEWARD_TEST_NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Require checks that the server answers; without it the test is
// skipped, except under CI=true, where that is a failure.
func Require(tb testing.TB) {
	tb.Helper()
	nc, err := nats.Connect(URL(), nats.Timeout(3*time.Second))
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("NATS at %s is required under CI=true: %v", URL(), err)
		}
		tb.Skipf("NATS with JetStream not reachable at %s (start nats-server -js, or set STEWARD_TEST_NATS_URL): %v", URL(), err)
	}
	nc.Close()
}

// Prefix requires the server and returns a new bus prefix; the prefix's
// streams are deleted when the test ends.
func Prefix(tb testing.TB) string {
	tb.Helper()
	Require(tb)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "t" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		nc, err := nats.Connect(URL(), nats.Timeout(3*time.Second))
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, strings.ToUpper(prefix)+"_EVENTS")
		_ = js.DeleteStream(ctx, strings.ToUpper(prefix)+"_TELEMETRY")
	})
	return prefix
}
