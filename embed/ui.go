package embed

import (
	"embed"
	"io/fs"
)

// The dashboard's files: embed/ui, served by `llorch orchestrate` at /ui/.
// embed/ui/vendor (the chart library, pinned by web/package-lock.json) is
// written by `make ui`; a build without it serves the page without charts.
//
//go:embed ui
var uiFiles embed.FS

// UI is the dashboard: index.html at its root, the rest relative to it.
var UI fs.FS = mustSubFS(uiFiles, "ui")

func mustSubFS(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
