// Package embed holds the files built into the llorch binary: the dashboard
// (UI, see ui.go) and the routing scripts: the
// default policy written as a script (DefaultRoutingScript) and the example
// scripts (RoutingExamples). `llorch orchestrate routing check` without a
// file checks the default script, and `llorch orchestrate routing examples
// [NAME]` lists the scripts or prints one, to start a policy from; tests of
// core/routing and core/orchestrator run them. Each script's first line is
// "// NAME.tengo: what it does", which the listing shows.
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
var RoutingExamples fs.FS = mustSubFS(files, "routing/examples")

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}
