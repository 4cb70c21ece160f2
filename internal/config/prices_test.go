package config

import (
	"strings"
	"testing"
)

func TestPricesURL(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if c, err := Load(getenv); err != nil || c.PricesURL != "" {
		t.Fatalf("unset: %q, %v", c.PricesURL, err)
	}
	env["PRICES_URL"] = " https://prices.example/crs.json?token=abc "
	if c, err := Load(getenv); err != nil || c.PricesURL != "https://prices.example/crs.json?token=abc" {
		t.Fatalf("set: %q, %v", c.PricesURL, err)
	}
	for _, bad := range []string{"ftp://prices.example/x.json", "/etc/crs/prices.json", "https://"} {
		env["PRICES_URL"] = bad
		_, err := Load(getenv)
		if err == nil || !strings.Contains(err.Error(), "PRICES_URL") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	env["PRICES_URL"] = "ftp://user:s3cret@prices.example/x.json"
	if _, err := Load(getenv); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the refusal echoes the URL's secret: %v", err)
	}
}
