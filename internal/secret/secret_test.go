package secret

import (
	"bytes"
	"strings"
	"testing"
)

func TestBoxRoundTrip(t *testing.T) {
	b, err := NewBox(strings.Repeat("k", 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := b.Seal([]byte("sk-ant-secret"))
	if bytes.Contains(sealed, []byte("sk-ant-secret")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := b.Open(sealed)
	if err != nil || string(got) != "sk-ant-secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if bytes.Equal(sealed, b.Seal([]byte("sk-ant-secret"))) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
}

func TestBoxRejectsOtherKeyAndTampering(t *testing.T) {
	a, _ := NewBox(strings.Repeat("a", 32))
	b, _ := NewBox(strings.Repeat("b", 32))
	sealed := a.Seal([]byte("x"))
	if _, err := b.Open(sealed); err != ErrOpen {
		t.Fatalf("other key: err = %v, want ErrOpen", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := a.Open(sealed); err != ErrOpen {
		t.Fatalf("tampered: err = %v, want ErrOpen", err)
	}
	if _, err := NewBox("short"); err == nil {
		t.Fatal("short passphrase accepted")
	}
}

func TestRelayKeyShape(t *testing.T) {
	k := NewRelayKey()
	if !LooksLikeRelayKey(k) {
		t.Fatalf("%q does not look like a relay key", k)
	}
	for _, bad := range []string{"", "cr_", "sk-" + k[3:], k + "0", k[:len(k)-1] + "z"} {
		if LooksLikeRelayKey(bad) {
			t.Errorf("LooksLikeRelayKey(%q) = true", bad)
		}
	}
	if Hash(k) == Hash(NewRelayKey()) || len(Hash(k)) != 64 {
		t.Fatal("hash collision or wrong length")
	}
}
