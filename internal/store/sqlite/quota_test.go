package sqlite

import (
	"testing"

	"github.com/crs-relay/crs/internal/store"
)

// TestOptionsEncoding checks that default options are stored as the column
// default and that an empty model map reads as none.
func TestOptionsEncoding(t *testing.T) {
	for _, o := range []store.AccountOptions{{}, {Models: map[string]string{}}} {
		enc, err := encodeOptions(o)
		must(t, err)
		if enc != `{}` {
			t.Errorf("encodeOptions(%+v) = %s, want {}", o, enc)
		}
	}
	got, err := decodeOptions(`{"models":{}}`)
	if err != nil || got.Models != nil {
		t.Errorf(`decodeOptions({"models":{}}) = %+v, %v; want nil models`, got, err)
	}
}
