// Package bind holds the two rules every llorch daemon applies to the address
// it listens on: whether that address stays on this machine (a daemon without
// credentials refuses any other), and how a daemon that let the OS choose its
// port tells its parent where it is (an address file written atomically).
package bind

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Loopback reports whether host (a name or an IP literal, without a port) is
// reachable only from this machine: "localhost" or an address in 127.0.0.0/8
// or ::1. An empty host (all interfaces), an unspecified address (0.0.0.0,
// ::) and any other name are not.
func Loopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackAddr is Loopback for a "host:port" listen address.
func LoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("bind: bad listen address %q: %w", addr, err)
	}
	return Loopback(host), nil
}

// LocalURL is the http URL under which a process on this machine reaches a
// listener bound to addr: an unspecified address (0.0.0.0, ::) becomes
// 127.0.0.1.
func LocalURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// WriteAddrFile writes url and a newline to path atomically (a temporary file
// in the same directory, then a rename), so a reader sees either no file or
// the whole line.
func WriteAddrFile(path, url string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("bind: address file: %w", err)
	}
	_, err = f.WriteString(url + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("bind: address file: %w", err)
	}
	return nil
}

// ReadAddrFile returns the URL in an address file written by WriteAddrFile,
// or an error wrapping os.ErrNotExist while there is none yet.
func ReadAddrFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	url, ok := strings.CutSuffix(string(data), "\n")
	if !ok || url == "" || strings.ContainsAny(url, "\n\r") {
		return "", fmt.Errorf("bind: %s does not hold one URL line", path)
	}
	return url, nil
}
