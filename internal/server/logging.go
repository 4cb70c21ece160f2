package server

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// Log file rotation: the file is rotated past LogFileMaxBytes and
// LogFileKeep rotated files are kept beside it (crs.log.1 newest), so
// LOG_DIR never holds more than about 600 MiB of crs logs.
const (
	LogFileName     = "crs.log"
	LogFileMaxBytes = 100 << 20
	LogFileKeep     = 5
)

// LogOptions say how crs logs.
type LogOptions struct {
	// Level is debug, info, warn or error; anything else is info.
	Level string
	// Format is text or json; "" picks text when the console is a terminal
	// (a person is reading) and JSON otherwise (a collector is).
	Format string
	// Dir, when set, also writes the log to Dir/crs.log, rotated by size
	// (always JSON unless Format says text).
	Dir string
}

// NewLogger builds the server's logger on console (standard error). close
// closes the log file, if any; call it after the last log line.
func NewLogger(console io.Writer, o LogOptions) (log *slog.Logger, close func() error, err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	consoleFormat := o.Format
	if consoleFormat == "" {
		consoleFormat = "json"
		if isTerminal(console) {
			consoleFormat = "text"
		}
	}
	h := newHandler(console, consoleFormat, opts)
	close = func() error { return nil }
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("LOG_DIR: %w", err)
		}
		f, err := OpenRotatingFile(filepath.Join(o.Dir, LogFileName), LogFileMaxBytes, LogFileKeep)
		if err != nil {
			return nil, nil, fmt.Errorf("LOG_DIR: %w", err)
		}
		fileFormat := o.Format
		if fileFormat == "" {
			fileFormat = "json"
		}
		h = slog.NewMultiHandler(h, newHandler(f, fileFormat, opts))
		close = f.Close
	}
	return slog.New(h), close, nil
}

func newHandler(w io.Writer, format string, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// isTerminal reports whether w is a character device (a terminal), without
// a dependency: files, pipes and journald's socket are not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
