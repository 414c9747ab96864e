// Package poolrun is the one code path by which `llorch ctl` and the
// orchestrator drive a pool host: run `llorch pool … [--json]` there (over
// SSH through core/remote, or as a local child process), read its version,
// and install this build on it.
//
//	t := poolrun.TargetOf(pool, sshBase)      // api.Pool -> Target
//	c, err := poolrun.Dial(ctx, t)            // SSH: host key checked strictly
//	defer c.Close()
//	var st api.PoolStatus
//	err = c.PoolJSON(ctx, []string{"status"}, nil, &st)
//
// # Finding llorch on the host
//
// Over SSH, Target.LlorchPath names the binary ("~/" is the login user's
// home; a bare name is looked up on PATH); empty means `llorch` on the remote
// PATH, else ~/.local/bin/llorch (where Install puts it: a non-interactive
// SSH command often runs without ~/.local/bin on its PATH). The lookup runs
// in the same remote shell as the command, so it costs no round trip. A
// binary that is not there yields an error matching ErrNoLlorch. Locally,
// empty means this executable (os.Executable).
//
// Every argument reaches the remote command verbatim: each argv element is
// shell-quoted (remote.Quote) and passed as a positional parameter.
//
// # Install
//
// Install copies what a release archive holds: bin/llorch and the files of
// lib/llorch/ next to it (the run-time CPU variants libggml-cpu-*.so, and
// libggml-cuda.so in a cuda build). The installed binary finds them where
// core/detect.LibDirs looks: <dir of llorch>/../lib/llorch, so the default
// destination ~/.local/bin/llorch gets ~/.local/lib/llorch/. See Install.
package poolrun
