package poolrun

import (
	"runtime"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/remote"
)

func TestCheckPlatform(t *testing.T) {
	if err := CheckPlatform("h", Platform()+"\n"); err != nil {
		t.Errorf("own platform refused: %v", err)
	}
	other := "Linux aarch64"
	if runtime.GOARCH == "arm64" {
		other = "Linux x86_64"
	}
	for _, uname := range []string{other, "Darwin x86_64", "FreeBSD amd64", ""} {
		err := CheckPlatform("h", uname)
		if err == nil || !strings.Contains(err.Error(), "built for") {
			t.Errorf("%q accepted (%v)", uname, err)
		}
	}
}

func TestSSHConfig(t *testing.T) {
	base := remote.Config{User: "baseuser", Port: 2200, KnownHostsPath: "/kh"}
	tests := []struct {
		host, wantHost, wantUser string
		wantPort                 int
	}{
		{"box", "box", "baseuser", 2200},
		{"me@box", "box", "me", 2200},
		{"me@box:22", "box", "me", 22},
		{"box:2222", "box", "baseuser", 2222},
		{"me@[::1]:2222", "::1", "me", 2222},
		{"[::1]", "::1", "baseuser", 2200},
		{"::1", "::1", "baseuser", 2200},
		{"a@b@box", "box", "a@b", 2200},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			cfg, err := sshConfig(tt.host, base)
			if err != nil || cfg.Host != tt.wantHost || cfg.User != tt.wantUser || cfg.Port != tt.wantPort || cfg.KnownHostsPath != "/kh" {
				t.Fatalf("sshConfig = %+v, %v; want %s@%s:%d", cfg, err, tt.wantUser, tt.wantHost, tt.wantPort)
			}
		})
	}
	for _, bad := range []string{"", "@box", "box:0", "box:x", "box:70000", "me@"} {
		if _, err := sshConfig(bad, base); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defghij", "kl"} {
		b.Write([]byte(s))
	}
	if b.String() != "efghijkl" {
		t.Fatalf("tail = %q", b.String())
	}
}

func TestInstallPaths(t *testing.T) {
	tests := []struct{ dest, bin, lib string }{
		{"~/.local/bin/llorch", "~/.local/bin/llorch", "~/.local/lib/llorch"},
		{".local/bin/llorch", "~/.local/bin/llorch", "~/.local/lib/llorch"},
		{"/opt/llorch/bin/llorch", "/opt/llorch/bin/llorch", "/opt/llorch/lib/llorch"},
		{"/usr/local/bin//llorch", "/usr/local/bin/llorch", "/usr/local/lib/llorch"},
		{"~/llorch", "~/llorch", "~/../lib/llorch"},
		{"/llorch", "/llorch", "/lib/llorch"},
	}
	for _, tt := range tests {
		bin, lib, err := installPaths(tt.dest)
		if err != nil || bin != tt.bin || lib != tt.lib {
			t.Errorf("installPaths(%q) = %q, %q, %v; want %q, %q", tt.dest, bin, lib, err, tt.bin, tt.lib)
		}
	}
	for _, bad := range []string{"", "~", "~/", "/opt/", "..", "~/..", "a/.."} {
		if _, _, err := installPaths(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
