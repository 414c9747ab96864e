package routing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// Manager holds the current script. With no script loaded, Admit and Place
// return Outcome "default" at once, with an empty Note and no Observe call:
// the built-in policy decides and nothing is counted. Load, Clear and the
// calls may run concurrently; a call uses the script that was current when it
// started.
type Manager struct {
	cfg Config
	cur atomic.Pointer[Script]
}

// NewManager returns a Manager with no script. cfg applies to every script it
// loads.
func NewManager(cfg Config) *Manager {
	return &Manager{cfg: cfg}
}

// Load compiles src and makes it the current script. On error the previous
// script (or none) stays current; a script that does not compile gives a
// *CompileError with the position, "routing: FILE:LINE:COL: message".
func (m *Manager) Load(name string, src []byte) error {
	s, err := Compile(name, src, m.cfg)
	if err != nil {
		return err
	}
	m.cur.Store(s)
	return nil
}

// Clear removes the current script: the built-in policy decides.
func (m *Manager) Clear() { m.cur.Store(nil) }

// Script returns the current script, nil when none is loaded.
func (m *Manager) Script() *Script { return m.cur.Load() }

// Source returns the current script's name and source; ok is false when no
// script is loaded.
func (m *Manager) Source() (name string, src []byte, ok bool) {
	s := m.cur.Load()
	if s == nil {
		return "", nil, false
	}
	return s.name, s.Source(), true
}

// Admit runs the current script's admit stage (see Script.Admit).
func (m *Manager) Admit(ctx context.Context, in AdmitInput) (AdmitDecision, Result) {
	s := m.cur.Load()
	if s == nil {
		return AdmitDecision{}, Result{Outcome: OutcomeDefault}
	}
	return s.Admit(ctx, in)
}

// Place runs the current script's place stage (see Script.Place).
func (m *Manager) Place(ctx context.Context, in PlaceInput) (PlaceDecision, Result) {
	s := m.cur.Load()
	if s == nil {
		return PlaceDecision{}, Result{Outcome: OutcomeDefault}
	}
	return s.Place(ctx, in)
}

// DefaultWatchInterval is WatchFile's poll interval when every <= 0.
const DefaultWatchInterval = 2 * time.Second

// WatchFile polls path every interval until ctx is done, and loads the file
// when its content differs from the current script's: at once if it already
// differs, then whenever it changes (a changed modification time or size
// makes it read and hash the file). onReload, when not nil, gets the result
// of every load attempt (nil, or the compile error; the previous script then
// stays) and of a failing read (once per distinct error). A file that fails to
// compile is not tried again until it changes. WatchFile blocks; run it in its
// own goroutine.
func (m *Manager) WatchFile(ctx context.Context, path string, every time.Duration, onReload func(err error)) {
	m.WatchFileWith(ctx, path, every, m.Load, onReload)
}

// WatchFileWith is WatchFile loading through load (a trial first, say)
// instead of Load.
func (m *Manager) WatchFileWith(ctx context.Context, path string, every time.Duration, load func(name string, src []byte) error, onReload func(err error)) {
	if every <= 0 {
		every = DefaultWatchInterval
	}
	report := func(err error) {
		if onReload != nil {
			onReload(err)
		}
	}
	var (
		modTime time.Time
		size    int64             = -1
		seen    [sha256.Size]byte // hash of the content last considered
		lastErr string
	)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		data, fi, err := readScript(path, modTime, size)
		switch {
		case err != nil:
			if err.Error() != lastErr {
				lastErr = err.Error()
				report(err)
			}
			modTime, size = time.Time{}, -1
		case data != nil:
			lastErr = ""
			modTime, size = fi.ModTime(), fi.Size()
			sum := sha256.Sum256(data)
			if sum != seen {
				seen = sum
				if _, cur, ok := m.Source(); !ok || !bytes.Equal(cur, data) {
					report(load(path, data))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readScript reads path unless its modification time and size are still
// modTime and size (then data is nil and err is nil).
func readScript(path string, modTime time.Time, size int64) ([]byte, os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("routing: watch: %w", err)
	}
	if fi.ModTime().Equal(modTime) && fi.Size() == size {
		return nil, fi, nil
	}
	data, err := readLimited(path, MaxSourceBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("routing: watch: %w", err)
	}
	return data, fi, nil
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
