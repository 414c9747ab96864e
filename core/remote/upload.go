package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"
)

// Upload copies the local file to remote over SFTP and gives it mode. A
// remote path starting with "~/" (or relative) is taken from the login
// user's home directory. The parent directory is created as needed. The data
// goes to a temporary name in the same directory, which is chmod'ed and then
// renamed over remote atomically (posix-rename@openssh.com), so readers see
// the old file or the complete new one; the temporary file is removed on
// failure. Cancelling ctx aborts the transfer.
func (c *Client) Upload(ctx context.Context, local, remote string, mode os.FileMode) (err error) {
	fail := func(step string, err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("remote: upload %s to %s:%s: %s: %w", local, c.addr, remote, step, err)
	}
	src, err := os.Open(local)
	if err != nil {
		return fail("open", err)
	}
	defer src.Close()

	sc, err := c.goph().NewSftp()
	if err != nil {
		return fail("sftp", err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { _ = sc.Close() })
	defer stop()

	dst := remote
	if dst == "~" || strings.HasPrefix(dst, "~/") || !path.IsAbs(dst) {
		home, err := sc.Getwd()
		if err != nil {
			return fail("home directory", err)
		}
		dst = path.Join(home, strings.TrimPrefix(strings.TrimPrefix(dst, "~"), "/"))
	}
	dir, base := path.Split(dst)
	if base == "" {
		return fail("path", fmt.Errorf("%q names a directory, not a file", remote))
	}
	if err := sc.MkdirAll(dir); err != nil {
		return fail("mkdir "+dir, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))

	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fail("create "+tmp, err)
	}
	defer func() {
		if err != nil {
			_ = sc.Remove(tmp)
		}
	}()
	if _, err := f.ReadFrom(src); err != nil {
		_ = f.Close()
		return fail("write "+tmp, err)
	}
	if err := f.Close(); err != nil {
		return fail("close "+tmp, err)
	}
	if err := sc.Chmod(tmp, mode.Perm()); err != nil {
		return fail("chmod "+tmp, err)
	}
	if err := sc.PosixRename(tmp, dst); err != nil {
		return fail("rename", err)
	}
	return nil
}
