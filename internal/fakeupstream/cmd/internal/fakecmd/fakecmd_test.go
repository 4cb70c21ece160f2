package fakecmd

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"k1", []string{"k1"}},
		{"k1, k2,", []string{"k1", "k2"}},
	} {
		if got := Keys(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Keys(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestServeHandshakeAndShutdown checks the contract the parent processes
// rely on: the first line is a URL that already answers, and ending ctx
// releases hanging requests before the server shuts down, so Serve returns
// promptly instead of waiting out the shutdown grace.
func TestServeHandshakeAndShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered, released := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			close(entered)
			<-released
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "127.0.0.1:0", h, pw, func() { close(released) })
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading first line: %v", err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first line = %q, want http://127.0.0.1:<port>", line)
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body = %q, want ok", body)
	}

	hung := make(chan struct{})
	go func() {
		defer close(hung)
		if resp, err := http.Get(base + "/hang"); err == nil {
			_ = resp.Body.Close()
		}
	}()
	// Shutdown waits only on requests in a handler, so make sure one is.
	<-entered

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after ctx ends", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Serve did not return: release was not called before Shutdown")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Serve took %v to stop", d)
	}
	<-hung
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out strings.Builder
	if err := Serve(context.Background(), ln.Addr().String(), http.NotFoundHandler(), &out, func() {}); err == nil {
		t.Fatal("Serve on a taken address returned nil")
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q before listening succeeded", out.String())
	}
}
