package chschema

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Capabilities are the features of a ClickHouse server that the migrations use
// when present. The zero value of every flag is the plain DDL that works on
// 18.16, the oldest server we support.
type Capabilities struct {
	// Version is what `SELECT version()` returned, e.g. "18.16.1" or "24.8.4.13".
	Version      string
	Major, Minor int
	// LowCardinality(String) without an experimental setting: 19.9+.
	LowCardinality bool
	// TTL on tables and columns: 19.6+.
	TTL bool
	// Column compression codecs: 19.1+.
	Codecs bool
}

// ParseCapabilities derives a server's capabilities from its version string.
func ParseCapabilities(version string) (Capabilities, error) {
	parts := strings.SplitN(strings.TrimSpace(version), ".", 3)
	if len(parts) < 2 {
		return Capabilities{}, fmt.Errorf("cannot parse ClickHouse version %q: want major.minor[.patch...]", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return Capabilities{}, fmt.Errorf("cannot parse ClickHouse version %q: want major.minor[.patch...]", version)
	}
	atLeast := func(maj, min int) bool { return major > maj || major == maj && minor >= min }
	return Capabilities{
		Version:        strings.TrimSpace(version),
		Major:          major,
		Minor:          minor,
		LowCardinality: atLeast(19, 9),
		TTL:            atLeast(19, 6),
		Codecs:         atLeast(19, 1),
	}, nil
}

// DetectCapabilities asks the server for its version.
func DetectCapabilities(ctx context.Context, conn driver.Conn) (Capabilities, error) {
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return Capabilities{}, fmt.Errorf("cannot read the ClickHouse server version: %w", err)
	}
	return ParseCapabilities(version)
}
