package api

import (
	"errors"
	"net/url"
	"strings"
)

// BaseURL normalizes the address of a llorch daemon (a worker or the
// orchestrator) to "scheme://host[:port][/path]" with no trailing slash:
// "host:port" means http://host:port. Only http and https are accepted, and
// no user info, query or fragment. It is the one place that turns what an
// operator or a worker wrote into a URL to call.
func BaseURL(raw string) (string, error) {
	out, err := baseURL(raw)
	if err != nil {
		return "", err
	}
	// What percent-decoding made of the host must survive a second reading
	// unchanged ("%80" decodes to a byte no host has).
	if again, err := baseURL(out); err != nil || again != out {
		return "", errors.New("the address does not read back as itself (percent-encoded host?)")
	}
	return out, nil
}

func baseURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("empty address")
	}
	if len(s) > 1024 {
		return "", errors.New("address longer than 1024 bytes")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x21 || c > 0x7e:
			return "", errors.New("only printable ASCII without spaces (use punycode for other host names)")
		case c == '?' || c == '#':
			return "", errors.New("query and fragment are not allowed")
		}
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("not a URL: " + strings.TrimPrefix(err.Error(), "parse "))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil:
		return "", errors.New("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("query and fragment are not allowed")
	}
	if p := u.Port(); p != "" {
		for _, c := range p {
			if c < '0' || c > '9' {
				return "", errors.New("bad port")
			}
		}
	}
	out := strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/")
	if len(out) > 1024 {
		return "", errors.New("address longer than 1024 bytes")
	}
	return out, nil
}
