package shots

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultExecPath is where Debian's chromium package installs the browser.
// .ci/run installs the package when the file is missing.
const DefaultExecPath = "/usr/bin/chromium"

// Default window size: the console's screenshots and page tests see a
// 1280×800 desktop viewport unless told otherwise.
const (
	DefaultWidth  = 1280
	DefaultHeight = 800
)

// DefaultStartTimeout bounds a browser start. A cold start of Debian's
// Chromium takes well under a second here; a start that takes longer than this
// is hung (no display, a broken profile) and waiting on cannot help.
const DefaultStartTimeout = 30 * time.Second

// ErrNoChromium is returned by Launch when the Chromium binary is missing.
var ErrNoChromium = errors.New("shots: chromium is not installed")

// LaunchOptions configure Launch. The zero value starts Debian's Chromium in a
// fresh temporary profile with a 1280×800 window.
type LaunchOptions struct {
	// ExecPath is the Chromium binary. Empty means DefaultExecPath.
	ExecPath string

	// UserDataDir is the browser profile directory. It should be new and
	// empty, so that no cookie, cache or service worker of an earlier run
	// leaks into this one. Empty means a temporary directory that chromedp
	// creates and removes when the browser stops.
	UserDataDir string

	// Width and Height size the window. Zero means DefaultWidth and
	// DefaultHeight.
	Width, Height int

	// StartTimeout bounds the start of the browser and the opening of its
	// first tab. Zero means DefaultStartTimeout.
	StartTimeout time.Duration

	// Logf receives chromedp's own error messages (protocol messages it could
	// not decode and the like), never page content. Nil drops them.
	Logf func(format string, args ...any)
}

// Flags returns the allocator options Launch starts Chromium with.
//
// The machines this project runs on (developers' and CI's) run as root and
// have no network beyond a few package registries, so the list is not a
// matter of taste:
//   - --headless, since there is no display;
//   - --no-sandbox, since Chromium refuses to start as root with its sandbox;
//   - --disable-gpu, since there is no GPU;
//   - --disable-background-networking, --disable-component-update,
//     --disable-sync and --disable-quic, since without them Chromium keeps
//     dialling Google's hosts and the closed network refuses those
//     connections many at a time;
//   - --no-first-run and a new empty --user-data-dir, so that every start is
//     the same clean browser.
//
// The rest serve repeatable pages: a fixed window size, an sRGB colour
// profile and hidden scrollbars make two screenshots of one page equal, and
// --disable-dev-shm-usage keeps Chromium off a small /dev/shm in containers.
func Flags(opts LaunchOptions) []chromedp.ExecAllocatorOption {
	execPath := opts.ExecPath
	if execPath == "" {
		execPath = DefaultExecPath
	}
	width, height := opts.Width, opts.Height
	if width == 0 {
		width = DefaultWidth
	}
	if height == 0 {
		height = DefaultHeight
	}
	flags := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.Headless, // --headless, --hide-scrollbars, --mute-audio
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(width, height),
	}
	if opts.UserDataDir != "" {
		flags = append(flags, chromedp.UserDataDir(opts.UserDataDir))
	}
	return flags
}

// Launch starts headless Chromium and opens one tab. It returns the tab's
// context, in which chromedp actions run, and stop, which closes the browser
// and waits for its process to exit. The browser also stops when ctx ends.
//
// Launch returns ErrNoChromium when the binary is missing, and an error when
// the browser does not start within the start timeout.
func Launch(ctx context.Context, opts LaunchOptions) (tab context.Context, stop func(), err error) {
	execPath := opts.ExecPath
	if execPath == "" {
		execPath = DefaultExecPath
	}
	if _, err := os.Stat(execPath); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrNoChromium, execPath, err)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, Flags(opts)...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logf))
	stop = func() {
		// Cancelling the tab's context closes the browser gracefully; the
		// allocator's cancel then waits for the process to exit.
		cancelTab()
		cancelAlloc()
	}

	// The first action starts the browser and binds its life to the context
	// it runs in, so it runs in tab itself, not in a context with a deadline;
	// the timer below bounds it instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(tab) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-started:
	case <-timer.C:
		stop()
		<-started
		return nil, nil, fmt.Errorf("shots: chromium did not start within %s", timeout)
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("shots: starting chromium: %w", err)
	}
	return tab, stop, nil
}
