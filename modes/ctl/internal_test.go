package ctl

import (
	"strings"
	"testing"
)

func TestParseSSHFlags(t *testing.T) {
	f, rest, err := parseSSHFlags([]string{"models", "--host", "a", "download", "hf:x/y/z.gguf", "--hosts=b,c", "--alias", "q",
		"-i", "/k", "--port", "2222", "--accept-new-host-key", "--llorch", "/opt/llorch", "--json"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.hosts, ",") != "a,b,c" || f.cfg.Port != 2222 || !f.cfg.AcceptNewHostKey || f.llorch != "/opt/llorch" ||
		len(f.cfg.IdentityFiles) != 1 {
		t.Errorf("flags = %+v", f)
	}
	if got := strings.Join(rest, " "); got != "models download hf:x/y/z.gguf --alias q --json" {
		t.Errorf("rest = %q", got)
	}
	for _, bad := range [][]string{{"--host"}, {"--port", "x"}, {"--port", "70000"}, {"--ssh-timeout", "soon"}} {
		if _, _, err := parseSSHFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
