package remote

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolvePrecedence(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	sc := filepath.Join(t.TempDir(), "ssh_config")
	body := "Host box\n  HostName 10.0.0.7\n  User cfguser\n  Port 2200\n  IdentityFile ~/.ssh/box_key\n\nHost *\n  User anyuser\n"
	if err := os.WriteFile(sc, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want target
	}{
		{"ssh_config", Config{Host: "box"}, target{host: "10.0.0.7", user: "cfguser", port: 2200}},
		{"flags win", Config{Host: "box", User: "flaguser", Port: 2222}, target{host: "10.0.0.7", user: "flaguser", port: 2222}},
		{"user@ beats ssh_config", Config{Host: "me@box"}, target{host: "10.0.0.7", user: "me", port: 2200}},
		{"wildcard", Config{Host: "other.example"}, target{host: "other.example", user: "anyuser", port: 22}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SSHConfigPath = sc
			got, err := resolve(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got.host != tt.want.host || got.user != tt.want.user || got.port != tt.want.port {
				t.Fatalf("resolve = %s@%s:%d, want %s@%s:%d", got.user, got.host, got.port, tt.want.user, tt.want.host, tt.want.port)
			}
		})
	}
	got, err := resolve(Config{Host: "box", SSHConfigPath: sc, IdentityFiles: []string{"/k/flag"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/k/flag", filepath.Join(home, ".ssh", "box_key")}; !slices.Equal(got.identities, want) {
		t.Fatalf("identities = %q, want %q", got.identities, want)
	}
	if _, err := resolve(Config{Host: "box", SSHConfigPath: filepath.Join(t.TempDir(), "missing")}); err != nil {
		t.Fatalf("missing ssh_config: %v", err)
	}
}
