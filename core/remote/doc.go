// Package remote is the SSH client that `llorch ctl` (and the orchestrator,
// with the same code, through core/poolrun) uses to drive pool hosts: run a
// command with its output streamed, its exit code kept and, with RunInput,
// data fed to its stdin; and upload a file atomically over SFTP.
//
// Dial resolves the target the way ssh(1) does for the parts llorch needs
// (HostName, User, Port and IdentityFile from ~/.ssh/config; flags win over
// the file, the file wins over defaults), authenticates with ssh-agent (when
// SSH_AUTH_SOCK is set) and identity files, and checks the host key strictly
// against known_hosts:
//
//   - an unknown key is refused (ErrUnknownHostKey) unless
//     Config.AcceptNewHostKey is set, in which case a known_hosts line is
//     appended, like StrictHostKeyChecking=accept-new;
//   - a changed or revoked key is always refused (ErrHostKeyChanged).
//
// Failures of a known kind wrap a package sentinel (ErrUnknownHostKey,
// ErrHostKeyChanged, ErrAuth, ErrUnreachable, ErrTimeout, ErrExitStatus) and
// read as one line, so the CLI can print them and exit 255 like ssh; a
// cancelled context is returned wrapped as such (errors.Is context.Canceled).
//
// Remote commands are argv slices; each element is shell-quoted with Quote,
// so the remote login shell must be POSIX-compatible (sh, bash, dash, zsh).
//
// # Libraries
//
// DESIGN names github.com/melbahja/goph. goph's dialing helpers hide the
// host-key callback and auth choices behind convenience functions (and its
// known_hosts helpers do not tell an unknown key from a changed one), so
// Dial uses golang.org/x/crypto/ssh directly: net dial under the context,
// ssh.NewClientConn with our own HostKeyCallback and auth methods. The
// resulting *ssh.Client is wrapped in a goph.Client, whose NewSftp opens the
// SFTP session (github.com/pkg/sftp) for Upload. Run uses an ssh.Session
// directly because goph's Cmd buffers output instead of streaming it.
package remote
