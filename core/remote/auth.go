package remote

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authMethods offers ssh-agent keys (when SSH_AUTH_SOCK is set) and then the
// identity files that exist and parse. Encrypted keys are skipped: there is
// no passphrase prompt; load them into the agent instead. The returned func
// closes the agent connection.
func authMethods(identities []string, log *slog.Logger) ([]ssh.AuthMethod, func()) {
	var signers []ssh.Signer
	closeAgent := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err != nil {
			log.Debug("ssh-agent unavailable", "socket", sock, "err", err)
		} else {
			closeAgent = func() { _ = conn.Close() }
			if s, err := agent.NewClient(conn).Signers(); err != nil {
				log.Debug("ssh-agent keys unavailable", "err", err)
			} else {
				signers = append(signers, s...)
			}
		}
	}
	seen := map[string]bool{}
	for _, path := range identities {
		if seen[path] {
			continue
		}
		seen[path] = true
		pem, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			log.Debug("identity file skipped", "path", path, "err", err)
			continue
		}
		s, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			log.Debug("encrypted identity file skipped (no passphrase prompt; add it to ssh-agent)", "path", path)
			continue
		}
		if err != nil {
			log.Debug("identity file skipped", "path", path, "err", err)
			continue
		}
		signers = append(signers, s)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closeAgent
}
