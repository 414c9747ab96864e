package detect

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LibDirs returns the directories where llorch looks for backend libraries
// (libggml-cuda.so), in search order: env — the value of $LLORCH_LIB_PATH,
// which the caller reads — when set, then <dir of exe>/../lib/llorch, the
// layout of a release archive (bin/llorch next to lib/llorch/). exe is the
// running executable's path; empty skips that entry.
func LibDirs(env, exe string) []string {
	var dirs []string
	if env != "" {
		dirs = append(dirs, env)
	}
	if exe != "" {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "..", "lib", "llorch"))
	}
	return dirs
}

// FindLib returns the path of the file name in the first of dirs that holds
// it, or an error that lists every place it looked.
func FindLib(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("%s not found (no library directory: set LLORCH_LIB_PATH)", name)
	}
	return "", fmt.Errorf("%s not found in %s (set LLORCH_LIB_PATH, or install it in <dir of llorch>/../lib/llorch)",
		name, strings.Join(dirs, ", "))
}
