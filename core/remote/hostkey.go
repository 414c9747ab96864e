package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyChecker verifies the server's host key against one known_hosts file
// and remembers why it refused, so Dial can return that error as is.
type hostKeyChecker struct {
	path      string
	hostPort  string
	acceptNew bool
	db        ssh.HostKeyCallback
	known     []knownhosts.KnownKey // keys on file for hostPort
	log       *slog.Logger
	accepted  ssh.PublicKey // added by accept-new; re-keying offers it again
	err       error
}

func newHostKeyChecker(path, hostPort string, acceptNew bool, log *slog.Logger) (*hostKeyChecker, error) {
	h := &hostKeyChecker{path: path, hostPort: hostPort, acceptNew: acceptNew, log: log}
	var files []string
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remote: known_hosts: %w", err)
	}
	db, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("remote: known_hosts: %w", err)
	}
	h.db = db
	// Learn which keys are on file for this host by asking about a key that
	// cannot be there; KeyError.Want lists them.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("remote: probe key: %w", err)
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("remote: probe key: %w", err)
	}
	var keyErr *knownhosts.KeyError
	if errors.As(db(hostPort, dummyAddr(hostPort), probe), &keyErr) {
		h.known = keyErr.Want
	}
	return h, nil
}

// algorithms restricts the server's host key algorithms to the types already
// on file, as ssh does, so that a host with several key types is not taken
// for a changed one. nil (all algorithms) for an unknown host.
func (h *hostKeyChecker) algorithms() []string {
	var algos []string
	seen := map[string]bool{}
	for _, k := range h.known {
		t := k.Key.Type()
		if seen[t] {
			continue
		}
		seen[t] = true
		if t == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
			continue
		}
		algos = append(algos, t)
	}
	return algos
}

func (h *hostKeyChecker) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.err = h.check(hostname, remote, key)
	return h.err
}

func (h *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if h.accepted != nil && bytes.Equal(h.accepted.Marshal(), key.Marshal()) {
		return nil
	}
	err := h.db(hostname, remote, key)
	if err == nil {
		return nil
	}
	fp := keyName(key) + " key " + ssh.FingerprintSHA256(key)
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		return errorf(ErrHostKeyChanged, "REMOTE HOST KEY REVOKED for %s: %s is marked @revoked in %s line %d; refusing to connect",
			h.hostPort, fp, revoked.Revoked.Filename, revoked.Revoked.Line)
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return fmt.Errorf("remote: host key check for %s: %w", h.hostPort, err)
	}
	if len(keyErr.Want) > 0 {
		w := keyErr.Want[0]
		return errorf(ErrHostKeyChanged, "WARNING: REMOTE HOST KEY CHANGED for %s: the server now offers %s, "+
			"but %s line %d holds a different key; someone may be intercepting the connection "+
			"(man-in-the-middle), or the host key was replaced; if the change is expected, "+
			"remove line %d from %s and verify the new key",
			h.hostPort, fp, w.Filename, w.Line, w.Line, w.Filename)
	}
	if !h.acceptNew {
		return errorf(ErrUnknownHostKey, "host key for %s is not known (%s); verify it and rerun with "+
			"--accept-new-host-key to add it to %s", h.hostPort, fp, h.path)
	}
	if err := appendKnownHost(h.path, h.hostPort, key); err != nil {
		return err
	}
	h.accepted = key
	h.log.Info("added host key to known_hosts", "host", h.hostPort, "fingerprint", ssh.FingerprintSHA256(key), "file", h.path)
	return nil
}

// appendKnownHost adds one known_hosts line for hostPort, creating the file
// (0600) and its directory (0700) when needed.
func appendKnownHost(path, hostPort string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("remote: known_hosts: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("remote: known_hosts: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostPort)}, key) + "\n"
	// Keep the new entry on its own line if the file lacks a final newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		_ = f.Close()
		return fmt.Errorf("remote: known_hosts %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("remote: known_hosts %s: %w", path, err)
	}
	return nil
}

// keyName is the key type as ssh prints it: ED25519, RSA, ECDSA.
func keyName(key ssh.PublicKey) string {
	t := strings.TrimPrefix(key.Type(), "ssh-")
	switch {
	case strings.HasPrefix(t, "ecdsa-"):
		return "ECDSA"
	case strings.HasPrefix(t, "sk-ecdsa"):
		return "ECDSA-SK"
	case strings.HasPrefix(t, "sk-ed25519"):
		return "ED25519-SK"
	}
	return strings.ToUpper(t)
}

// dummyAddr is a net.Addr for the probe lookup; knownhosts only needs it to
// parse as host:port.
type dummyAddr string

func (a dummyAddr) Network() string { return "tcp" }
func (a dummyAddr) String() string  { return string(a) }
