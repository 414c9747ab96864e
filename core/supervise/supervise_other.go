//go:build !linux

package supervise

import (
	"context"
	"time"
)

// Start reports ErrUnsupported: supervise needs Linux's /proc.
func Start(Spec) (Proc, error) { return Proc{}, ErrUnsupported }

// StartTime reports ErrUnsupported.
func StartTime(int) (uint64, error) { return 0, ErrUnsupported }

// State reports ErrUnsupported.
func State(int) (string, error) { return "", ErrUnsupported }

// Alive reports false.
func Alive(Proc) bool { return false }

// Stop reports ErrUnsupported.
func Stop(context.Context, Proc, time.Duration) error { return ErrUnsupported }

// Kill reports ErrUnsupported.
func Kill(Proc) error { return ErrUnsupported }

// FindByEnv reports ErrUnsupported.
func FindByEnv(string, string) ([]Found, error) { return nil, ErrUnsupported }
