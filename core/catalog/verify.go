package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// ggufMagic is the first four bytes of every GGUF file.
var ggufMagic = []byte("GGUF")

// Verify re-hashes the file at path and compares its sha256 with wantSHA256
// (64 hex digits, any case). A mismatch wraps [ErrChecksumMismatch] and names
// both values; a missing file wraps [ErrNotFound]. Cancelling ctx stops the
// hashing.
func Verify(ctx context.Context, path, wantSHA256 string) error {
	want, ok := parseSHA256(wantSHA256)
	if !ok {
		return fmt.Errorf("verify %s: expected sha256 %q is not 64 hex digits", path, wantSHA256)
	}
	got, _, err := SHA256File(ctx, path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if got != want {
		return fmt.Errorf("verify %s: %w: expected sha256 %s, got %s", path, ErrChecksumMismatch, want, got)
	}
	return nil
}

// SHA256File returns the lowercase hex sha256 and the size of the file at
// path. A missing file wraps [ErrNotFound].
func SHA256File(ctx context.Context, path string) (sum string, size int64, err error) {
	return hashFile(ctx, path, nil)
}

func hashFile(ctx context.Context, path string, prog *progress) (string, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	prog.begin("hash", fi.Size(), 0)
	n, err := copyCtx(ctx, h, f, prog)
	prog.end(err == nil)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyCtx copies src to dst until EOF, checking ctx between chunks and
// reporting progress.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader, prog *progress) (int64, error) {
	buf := make([]byte, copyBufferSize)
	var n int64
	for {
		if ctx.Err() != nil {
			return n, context.Cause(ctx)
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			prog.add(int64(nw))
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// checkMagic reports ErrNotGGUF unless the file starts with "GGUF".
func checkMagic(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, len(ggufMagic))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	if !bytes.Equal(head[:n], ggufMagic) {
		return fmt.Errorf("%w: %s starts with %q, want %q", ErrNotGGUF, path, head[:n], ggufMagic)
	}
	return nil
}
