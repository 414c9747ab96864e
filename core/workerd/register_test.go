package workerd

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestAdvertise(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		ip, orch, want string
	}{
		{"127.0.0.1", "http://10.0.0.1:8080", "http://127.0.0.1:8001"},
		{"10.1.2.3", "http://10.0.0.1:8080", "http://10.1.2.3:8001"},
		{"0.0.0.0", "http://127.0.0.1:8080", "http://127.0.0.1:8001"},
		{"0.0.0.0", "http://localhost:8080", "http://127.0.0.1:8001"},
		{"::", "http://[::1]:8080", "http://127.0.0.1:8001"},
		{"0.0.0.0", "http://10.0.0.1:8080", "http://" + net.JoinHostPort(host, "8001")},
	} {
		got := advertise(&net.TCPAddr{IP: net.ParseIP(tc.ip), Port: 8001}, tc.orch)
		if got != tc.want {
			t.Errorf("advertise(%s, %s) = %s, want %s", tc.ip, tc.orch, got, tc.want)
		}
		if strings.Contains(got, "0.0.0.0") {
			t.Errorf("advertised %s", got)
		}
	}
}
