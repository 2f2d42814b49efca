package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// tokenSet holds the SHA-256 of each accepted token. Comparing fixed-length
// hashes in constant time, against every token without stopping early, tells
// an attacker nothing about a token's length or prefix.
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens []string) tokenSet {
	var s tokenSet
	for _, t := range tokens {
		if t = strings.TrimSpace(t); t != "" {
			s = append(s, sha256.Sum256([]byte(t)))
		}
	}
	return s
}

// allows reports whether r carries an accepted bearer token (or no tokens are configured).
func (s tokenSet) allows(r *http.Request) bool {
	if len(s) == 0 {
		return true
	}
	// The scheme is case-insensitive (RFC 9110, section 11.1): curl users and
	// some HTTP libraries send "bearer".
	scheme, given, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(given)))
	match := 0
	for i := range s {
		match |= subtle.ConstantTimeCompare(sum[:], s[i][:])
	}
	return match == 1
}

// sameSecret tells whether given equals want, in time that depends on
// neither: comparing their SHA-256 hashes hides want's length too.
func sameSecret(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
