package supervise

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// statLine builds a /proc/PID/stat line with the given command name, state,
// process group and start time.
func statLine(comm, state string, pgid int, start uint64) string {
	return fmt.Sprintf("4242 (%s) %s 1 %d 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 5304320 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0",
		comm, state, pgid, start)
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want procStat
		err  bool
	}{
		{"sleep", statLine("sleep", "S", 4242, 123456), procStat{"S", 4242, 123456}, false},
		{"spaces and parens in name", statLine("a) b (c", "T", 7, 99), procStat{"T", 7, 99}, false},
		{"zombie", statLine("llorch", "Z", 4242, 1), procStat{"Z", 4242, 1}, false},
		{"no name", "4242 S 1 2", procStat{}, true},
		{"truncated", "4242 (sleep) S 1 4242 4242 0", procStat{}, true},
		{"bad start time", statLine("x", "S", 1, 0)[:0] + "4242 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 1", procStat{}, true},
		{"bad group", "4242 (x) S 1 grp 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1", procStat{}, true},
		{"empty", "", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add(statLine("sleep", "S", 4242, 123456))
	f.Add(statLine("a) b (c", "T", 7, 99))
	f.Add("4242 (x")
	f.Fuzz(func(t *testing.T, in string) {
		st, err := parseStat([]byte(in))
		if err == nil && st.State == "" {
			t.Fatalf("accepted %q with an empty state", in)
		}
	})
}

func TestSplitNULAndHasEntry(t *testing.T) {
	env := []byte("A=1\x00LLORCH_POOL_DIR=/srv/pool\x00B=\x00")
	if got, want := splitNUL(env), []string{"A=1", "LLORCH_POOL_DIR=/srv/pool", "B="}; !slices.Equal(got, want) {
		t.Errorf("splitNUL = %q, want %q", got, want)
	}
	if got := splitNUL([]byte("no-nul")); !slices.Equal(got, []string{"no-nul"}) {
		t.Errorf("splitNUL without NUL = %q", got)
	}
	if got := splitNUL(nil); got != nil {
		t.Errorf("splitNUL(nil) = %q", got)
	}
	for _, tt := range []struct {
		entry string
		want  bool
	}{
		{"LLORCH_POOL_DIR=/srv/pool", true},
		{"LLORCH_POOL_DIR=/srv/poo", false},
		{"LLORCH_POOL_DIR=/srv/pool/sub", false},
		{"B=", true},
		{"A=", false},
	} {
		if got := hasEntry(env, []byte(tt.entry)); got != tt.want {
			t.Errorf("hasEntry(%q) = %v, want %v", tt.entry, got, tt.want)
		}
	}
}

func TestOpError(t *testing.T) {
	err := &opError{"stop", 42, fmt.Errorf("%w (it started at 1, not 2)", ErrPIDReused)}
	if got, want := err.Error(), "supervise: stop pid 42: pid reused by another process (it started at 1, not 2)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrPIDReused) {
		t.Error("opError does not unwrap to its cause")
	}
}
