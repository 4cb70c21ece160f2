// Package secret seals credentials at rest (AES-256-GCM), hashes relay keys
// and admin tokens (SHA-256), and generates random keys and passwords.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// KeyPrefix starts every relay key.
const KeyPrefix = "cr_"

// ErrOpen is returned when a sealed value cannot be decrypted: it was
// sealed under another ENCRYPTION_KEY or was altered.
var ErrOpen = errors.New("secret: cannot decrypt (wrong ENCRYPTION_KEY or damaged value)")

// sealVersion leads every sealed value so the format can change later.
const sealVersion = 1

// Box seals and opens credentials with a key derived from ENCRYPTION_KEY.
type Box struct {
	aead cipher.AEAD
}

// NewBox derives the AES-256 key as SHA-256 of the passphrase (which is at
// least 32 characters, so its entropy is not the weak point) under a fixed
// domain label, so the same ENCRYPTION_KEY used elsewhere yields another key.
func NewBox(passphrase string) (*Box, error) {
	if len(passphrase) < 32 {
		return nil, fmt.Errorf("secret: ENCRYPTION_KEY must be at least 32 characters, got %d", len(passphrase))
	}
	k := sha256.Sum256([]byte("crs credential key v1\x00" + passphrase))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext. The result is version || nonce || ciphertext.
// An empty plaintext seals to nil.
func (b *Box) Seal(plaintext []byte) []byte {
	if len(plaintext) == 0 {
		return nil
	}
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = sealVersion
	if _, err := io.ReadFull(rand.Reader, out[1:]); err != nil {
		panic("secret: no randomness: " + err.Error())
	}
	return b.aead.Seal(out, out[1:], plaintext, nil)
}

// Open decrypts a value made by Seal. nil opens to nil.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Hash returns the hex SHA-256 of s. Relay keys carry 256 random bits, so a
// plain hash is enough and does not depend on ENCRYPTION_KEY: rotating that
// key never invalidates relay keys.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Equal compares two strings in constant time.
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// RandomHex returns n random bytes, hex encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic("secret: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// NewRelayKey returns a fresh relay key: "cr_" + 64 hex characters.
func NewRelayKey() string { return KeyPrefix + RandomHex(32) }

// LooksLikeRelayKey reports whether s has the relay key shape, so obviously
// wrong input is refused before any lookup.
func LooksLikeRelayKey(s string) bool {
	if len(s) != len(KeyPrefix)+64 || s[:len(KeyPrefix)] != KeyPrefix {
		return false
	}
	_, err := hex.DecodeString(s[len(KeyPrefix):])
	return err == nil
}
