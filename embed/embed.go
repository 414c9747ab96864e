// Package embed holds the files built into the llorch binary: the default
// routing script and the example scripts.
package embed

import (
	"embed"
	"io/fs"
)

//go:embed routing/*.tengo routing/examples/*.tengo
var files embed.FS

// DefaultRoutingScript is routing/default.tengo: the built-in routing policy
// written as a documented script.
var DefaultRoutingScript = mustRead("routing/default.tengo")

// RoutingExamples holds the example routing scripts, by file name
// ("pin_model_to_pool.tengo", ...).
var RoutingExamples fs.FS = mustSub("routing/examples")

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
