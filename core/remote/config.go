package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// target is a Config resolved against ssh_config and the defaults.
type target struct {
	host       string // HostName to connect to
	user       string
	port       int
	identities []string // absolute paths, flags first
	knownHosts string
}

func resolve(cfg Config) (target, error) {
	alias := strings.TrimSpace(cfg.Host)
	var hostUser string
	if i := strings.LastIndexByte(alias, '@'); i >= 0 {
		hostUser, alias = alias[:i], alias[i+1:]
	}
	if alias == "" {
		return target{}, fmt.Errorf("remote: no host given")
	}
	home, _ := os.UserHomeDir()

	sc, err := loadSSHConfig(cfg.SSHConfigPath, home)
	if err != nil {
		return target{}, err
	}
	get := func(key string) string {
		if sc == nil {
			return ""
		}
		v, _ := sc.Get(alias, key)
		return strings.TrimSpace(v)
	}

	t := target{host: alias}
	if h := get("HostName"); h != "" {
		t.host = strings.ReplaceAll(h, "%h", alias)
	}

	switch {
	case cfg.User != "":
		t.user = cfg.User
	case hostUser != "":
		t.user = hostUser
	case get("User") != "":
		t.user = get("User")
	default:
		t.user = currentUser()
	}
	if t.user == "" {
		return target{}, fmt.Errorf("remote: %s: no user given and the current user is unknown", alias)
	}

	switch {
	case cfg.Port != 0:
		t.port = cfg.Port
	case get("Port") != "":
		p, err := strconv.Atoi(get("Port"))
		if err != nil {
			return target{}, fmt.Errorf("remote: ssh_config Port for %s: %w", alias, err)
		}
		t.port = p
	default:
		t.port = 22
	}
	if t.port < 1 || t.port > 65535 {
		return target{}, fmt.Errorf("remote: %s: port %d out of range", alias, t.port)
	}

	expand := func(p string) string {
		p = strings.NewReplacer("%d", home, "%u", currentUser(), "%r", t.user, "%h", t.host, "%%", "%").Replace(p)
		if p == "~" {
			return home
		}
		if strings.HasPrefix(p, "~/") {
			return filepath.Join(home, p[2:])
		}
		return p
	}
	for _, f := range cfg.IdentityFiles {
		t.identities = append(t.identities, expand(f))
	}
	var fromConfig []string
	if sc != nil {
		fromConfig, _ = sc.GetAll(alias, "IdentityFile")
	}
	for _, f := range fromConfig {
		t.identities = append(t.identities, expand(strings.Trim(strings.TrimSpace(f), `"`)))
	}
	if len(fromConfig) == 0 && home != "" {
		// ssh's defaults when ssh_config names none.
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			t.identities = append(t.identities, filepath.Join(home, ".ssh", n))
		}
	}

	t.knownHosts = cfg.KnownHostsPath
	if t.knownHosts == "" {
		t.knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	} else {
		t.knownHosts = expand(t.knownHosts)
	}
	return t, nil
}

// loadSSHConfig decodes the ssh_config at path ("" = ~/.ssh/config). A
// missing file yields nil and no error.
func loadSSHConfig(path, home string) (*ssh_config.Config, error) {
	if path == "" {
		if home == "" {
			return nil, nil
		}
		path = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remote: ssh_config: %w", err)
	}
	defer f.Close()
	sc, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("remote: ssh_config %s: %w", path, err)
	}
	return sc, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
