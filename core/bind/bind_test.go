package bind

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.3.2.1": true, "::1": true, "[::1]": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "192.168.1.2": false, "example.org": false,
		"localhost.example.org": false, "::ffff:10.0.0.1": false,
	} {
		if got := Loopback(host); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", host, got, want)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:0": true, "localhost:1": true, ":8080": false, "0.0.0.0:80": false} {
		got, err := LoopbackAddr(addr)
		if err != nil || got != want {
			t.Errorf("LoopbackAddr(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := LoopbackAddr("127.0.0.1"); err == nil {
		t.Error("an address without a port was accepted")
	}
}

func TestLocalURL(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8001}, "http://127.0.0.1:8001"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8001}, "http://127.0.0.1:8001"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9}, "http://127.0.0.1:9"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "http://[::1]:9"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 80}, "http://10.1.2.3:80"},
	} {
		if got := LocalURL(tc.addr); got != tc.want {
			t.Errorf("LocalURL(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestAddrFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.addr")
	if _, err := ReadAddrFile(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("before writing: %v", err)
	}
	if err := WriteAddrFile(path, "http://127.0.0.1:1234"); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadAddrFile(path); err != nil || got != "http://127.0.0.1:1234" {
		t.Fatalf("ReadAddrFile = %q, %v", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("temporary files left: %v %v", entries, err)
	}
	// A partial line (what a non-atomic writer could leave) is not a URL.
	if err := os.WriteFile(path, []byte("http://127.0.0.1:12"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAddrFile(path); err == nil {
		t.Error("a line without its newline was accepted")
	}
	if err := WriteAddrFile(filepath.Join(dir, "missing", "w.addr"), "http://x"); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
