package poolrun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/catalog"
	"github.com/llorch/llorch/core/detect"
)

// DefaultDest is where Install puts llorch on an SSH host; its libraries go
// to ~/.local/lib/llorch.
const DefaultDest = "~/.local/bin/llorch"

// InstallOptions says what to install where.
type InstallOptions struct {
	// Dest is the binary's path on the host ("" = DefaultDest over SSH;
	// required for a local target). "~/" and relative paths are under the
	// login user's home.
	Dest string
	// Exe is the local binary to copy ("" = this executable).
	Exe string
	// LibDir is the local library directory to copy ("" = the one the
	// binary uses: <dir of Exe>/../lib/llorch, see core/detect.LibDirs; it
	// may be absent).
	LibDir string
	// Log, when set, gets one line per file copied, kept or removed.
	Log io.Writer
}

// InstalledFile is one file Install put on (or found on) the host.
type InstalledFile struct {
	Path   string `json:"path"` // on the host, as given (may start with ~/)
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Copied bool   `json:"copied"` // false: the host already had this content
}

// InstallReport says what Install did.
type InstallReport struct {
	Host   string          `json:"host"`
	Binary InstalledFile   `json:"binary"`
	LibDir string          `json:"lib_dir"` // on the host: <dir of Dest>/../lib/llorch
	Libs   []InstalledFile `json:"libs,omitempty"`
	// Removed are backend libraries (libggml-*.so) that were in LibDir on
	// the host but are not part of this build.
	Removed []string `json:"removed,omitempty"`
	// Build is what the installed binary says of itself (`llorch version`).
	Build BuildInfo `json:"build"`
}

// Changed reports whether Install copied or removed anything.
func (r InstallReport) Changed() bool {
	if r.Binary.Copied || len(r.Removed) > 0 {
		return true
	}
	return slices.ContainsFunc(r.Libs, func(f InstalledFile) bool { return f.Copied })
}

// Install copies this build to the host, as a release archive lays it out:
// the binary to opts.Dest and the files of the local lib/llorch directory to
// <dir of Dest>/../lib/llorch, where the installed binary looks for them
// (core/detect.LibDirs). In order:
//
//  1. the host's `uname -sm` must match this build's OS and architecture;
//  2. files whose sha256 the host already has are left alone, so a second
//     Install copies nothing;
//  3. each library, then the binary, goes to a temporary name next to its
//     destination and is renamed over it, so nothing ever runs a half file;
//  4. backend libraries (libggml-*.so) on the host that this build lacks are
//     removed: a variant from another build must not be loaded by this one;
//     other files there are left alone;
//  5. the installed binary must answer `version`.
//
// Over SSH files go by SFTP. A local target copies within this machine and
// needs opts.Dest (without it Install returns ErrLocal: a local pool runs
// this executable, there is nothing to install).
func (c *Conn) Install(ctx context.Context, opts InstallOptions) (InstallReport, error) {
	rep := InstallReport{Host: c.Addr()}
	dest := opts.Dest
	if dest == "" {
		if c.t.Transport == api.TransportLocal {
			return rep, fmt.Errorf("%w: a local pool runs this executable (give a destination to copy it)", ErrLocal)
		}
		dest = DefaultDest
	}
	dest, libDest, err := installPaths(dest)
	if err != nil {
		return rep, err
	}
	rep.LibDir = libDest
	exe, libDir, err := localBuild(opts)
	if err != nil {
		return rep, err
	}
	var code int
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "%s: "+format+"\n", append([]any{c.Addr()}, args...)...)
		}
	}

	// 1. The platform.
	var uname bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	code, err = c.host.run(ctx, []string{"uname", "-sm"}, nil, &uname, stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return rep, fmt.Errorf("poolrun: install: uname on %s: %w", c.Addr(), err)
	}
	if err := CheckPlatform(c.Addr(), uname.String()); err != nil {
		return rep, err
	}

	// 2. What is there already.
	var libs []localFile
	if libDir != "" {
		if libs, err = listLibs(libDir); err != nil {
			return rep, err
		}
	}
	bin := localFile{path: exe}
	if bin.sum, bin.size, err = catalog.SHA256File(ctx, exe); err != nil {
		return rep, fmt.Errorf("poolrun: install: %w", err)
	}
	for i := range libs {
		if libs[i].sum, libs[i].size, err = catalog.SHA256File(ctx, libs[i].path); err != nil {
			return rep, fmt.Errorf("poolrun: install: %w", err)
		}
	}
	remotePaths := []string{dest}
	for _, l := range libs {
		remotePaths = append(remotePaths, path.Join(rep.LibDir, filepath.Base(l.path)))
	}
	sums, present, err := c.inspect(ctx, rep.LibDir, remotePaths)
	if err != nil {
		return rep, err
	}

	// 3. Libraries first, then the binary.
	put := func(l localFile, to string, mode uint32, have string) (InstalledFile, error) {
		f := InstalledFile{Path: to, SHA256: l.sum, Size: l.size}
		if have == l.sum {
			logf("%s is already this build's (sha256 %s)", to, l.sum[:12])
			return f, nil
		}
		if err := c.host.upload(ctx, l.path, to, mode); err != nil {
			return f, fmt.Errorf("poolrun: install: %w", err)
		}
		f.Copied = true
		logf("installed %s (%s, sha256 %s)", to, api.SizeText(l.size), l.sum[:12])
		return f, nil
	}
	for i, l := range libs {
		f, err := put(l, remotePaths[i+1], 0o644, sums[i+1])
		if err != nil {
			return rep, err
		}
		rep.Libs = append(rep.Libs, f)
	}

	// 4. Stale backend libraries.
	var stale []string
	for _, name := range present {
		if isBackendLib(name) && !slices.ContainsFunc(libs, func(l localFile) bool { return filepath.Base(l.path) == name }) {
			stale = append(stale, path.Join(rep.LibDir, name))
		}
	}
	if len(stale) > 0 {
		code, err := c.host.run(ctx, append([]string{"sh", "-c", homeScript + `for f; do rm -f -- "$(x "$f")" || exit 1; done`, "sh"}, stale...), nil, nil, stderr)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(stderr.String()))
		}
		if err != nil {
			return rep, fmt.Errorf("poolrun: install: removing %s on %s: %w", strings.Join(stale, ", "), c.Addr(), err)
		}
		for _, s := range stale {
			logf("removed %s (not part of this build)", s)
		}
		rep.Removed = stale
	}

	if rep.Binary, err = put(bin, dest, 0o755, sums[0]); err != nil {
		return rep, err
	}

	// 5. It runs.
	var out bytes.Buffer
	stderr = &tailBuffer{max: stderrTail}
	code, err = c.host.llorch(ctx, dest, []string{"version"}, nil, &out, stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return rep, fmt.Errorf("poolrun: install: %s version on %s: %w", dest, c.Addr(), err)
	}
	if rep.Build, err = ParseVersion(out.String()); err != nil {
		return rep, err
	}
	return rep, nil
}

// installPaths returns the binary's path and its library directory on the
// host for dest, each absolute or under the home directory ("~/…"): the
// library directory is <dir of dest>/../lib/llorch, as core/detect.LibDirs
// looks for it (~/llorch gets ~/../lib/llorch).
func installPaths(dest string) (bin, libDir string, err error) {
	if dest == "" || strings.HasSuffix(dest, "/") || dest == "~" {
		return "", "", fmt.Errorf("poolrun: install: destination %q names a directory, not a file", dest)
	}
	if path.IsAbs(dest) {
		bin = path.Clean(dest)
		return bin, path.Join(path.Dir(bin), "..", "lib", "llorch"), nil
	}
	rel := path.Clean(strings.TrimPrefix(dest, "~/"))
	if rel == "." || rel == ".." || strings.HasSuffix(rel, "/..") {
		return "", "", fmt.Errorf("poolrun: install: destination %q names a directory, not a file", dest)
	}
	return "~/" + rel, "~/" + path.Join(path.Dir(rel), "..", "lib", "llorch"), nil
}

// localBuild finds the binary and library directory to copy.
func localBuild(opts InstallOptions) (exe, libDir string, err error) {
	exe = opts.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return "", "", fmt.Errorf("poolrun: install: this executable: %w", err)
		}
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	libDir = opts.LibDir
	if libDir == "" {
		dirs := detect.LibDirs("", exe) // the release layout only, not $LLORCH_LIB_PATH
		if st, err := os.Stat(dirs[0]); err == nil && st.IsDir() {
			libDir = filepath.Clean(dirs[0])
		}
	} else if st, err := os.Stat(libDir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("poolrun: install: library directory %s: not a directory (%v)", libDir, err)
	}
	return exe, libDir, nil
}

type localFile struct {
	path string
	sum  string
	size int64
}

// listLibs returns the regular files (or links to them) directly in dir.
func listLibs(dir string) ([]localFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("poolrun: install: %w", err)
	}
	var files []localFile
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		files = append(files, localFile{path: p})
	}
	return files, nil
}

// isBackendLib reports whether name is a ggml backend library that llorch
// loads from its library directory.
func isBackendLib(name string) bool {
	return strings.HasPrefix(name, "libggml-") && strings.HasSuffix(name, ".so")
}

// homeScript starts the host's helper scripts: run in $HOME (relative paths
// are under it, as over SSH and SFTP) and define x, which prints its
// argument with a leading ~/ replaced by $HOME/.
const homeScript = `cd "$HOME" || exit 1
x() { case $1 in "~/"*) printf '%s\n' "$HOME/${1#"~/"}" ;; *) printf '%s\n' "$1" ;; esac; }
`

// inspectScript prints, for each path argument after the first, its sha256
// or "-" when it is not a file, then a line "--", then the names in the
// directory given first (nothing when it does not exist).
const inspectScript = homeScript + `d=$(x "$1"); shift
for f; do
  f=$(x "$f")
  if [ -f "$f" ]; then { sha256sum "$f" 2>/dev/null || shasum -a 256 "$f" 2>/dev/null || echo -; } | cut -d' ' -f1; else echo -; fi
done
echo --
if [ -d "$d" ]; then ls -A "$d"; fi
exit 0`

// inspect returns the host's sha256 of each path ("-" when absent or
// unknown) and the names in dir.
func (c *Conn) inspect(ctx context.Context, dir string, paths []string) (sums, names []string, err error) {
	var out bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	code, err := c.host.run(ctx, append([]string{"sh", "-c", inspectScript, "sh", dir}, paths...), nil, &out, stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("poolrun: install: looking at %s on %s: %w", dir, c.Addr(), err)
	}
	sc := bufio.NewScanner(&out)
	listing := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !listing && line == "--":
			listing = true
		case listing:
			names = append(names, line)
		default:
			sums = append(sums, line)
		}
	}
	if len(sums) != len(paths) || !listing {
		return nil, nil, fmt.Errorf("poolrun: install: looking at %s on %s: unexpected output %q", dir, c.Addr(), head(out.Bytes(), 300))
	}
	return sums, names, nil
}

// Platform is what `uname -sm` prints on a host this binary runs on.
func Platform() string {
	osName := map[string]string{"linux": "Linux", "darwin": "Darwin"}[runtime.GOOS]
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if runtime.GOOS == "darwin" && runtime.GOARCH == "arm64" {
		arch = "arm64"
	}
	return osName + " " + arch
}

// CheckPlatform refuses a host whose `uname -sm` output is not this
// binary's platform.
func CheckPlatform(host, uname string) error {
	if got, want := strings.TrimSpace(uname), Platform(); got != want {
		return fmt.Errorf("poolrun: install: %s is %q but this llorch is built for %q (%s/%s); use a release archive for that platform",
			host, got, want, runtime.GOOS, runtime.GOARCH)
	}
	return nil
}
