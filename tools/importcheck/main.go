// Command importcheck enforces llorch's import boundaries (see DESIGN.md):
// imports point down (main → modes → core → backends), a mode never imports
// another mode, cgo lives only in backends/llamacpp, and each heavy third-party
// dependency stays in the one package that owns it. `make check` runs it.
//
// Only the imports of non-test files are checked (go list's Imports): a test
// may import an owned dependency to check its own package against it, as
// core/gguf's and core/synth's tests read the GGUF writer's output back with
// gguf-parser-go, which only core/catalog may use otherwise.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const module = "github.com/llorch/llorch"

// owners maps a third-party import prefix to the package prefixes allowed to use it.
var owners = map[string][]string{
	"github.com/labstack/echo":           {"core/workerd", "core/orchestrator", "core/openai"},
	"go.etcd.io/bbolt":                   {"core/store"},
	"github.com/gpustack/gguf-parser-go": {"core/catalog"},
	"github.com/d5/tengo":                {"core/routing"},
	"github.com/melbahja/goph":           {"core/remote"},
	"golang.org/x/crypto/ssh":            {"core/remote"},
	"github.com/kevinburke/ssh_config":   {"core/remote"},
	"github.com/ollama/ollama":           {"backends/llamacpp"},
	"github.com/urfave/cli":              {"main", "modes/"},
	"sigs.k8s.io/yaml":                   {"core/fleetfile"},
	"go.yaml.in/yaml":                    {"core/fleetfile"},
	"golang.org/x/image":                 {"core/bench"}, // bitmap font for PNG bench charts (plot.go)
}

func main() {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{len .CgoFiles}}`, "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck: go list:", err)
		os.Exit(2)
	}
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			continue
		}
		pkg := rel(parts[0])
		if parts[2] != "0" && pkg != "backends/llamacpp" {
			problems = append(problems, fmt.Sprintf("%s: uses cgo (only backends/llamacpp may)", pkg))
		}
		for _, imp := range strings.Fields(parts[1]) {
			if msg := check(pkg, imp); msg != "" {
				problems = append(problems, fmt.Sprintf("%s imports %s: %s", pkg, imp, msg))
			}
		}
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func rel(p string) string {
	if p == module {
		return "main"
	}
	return strings.TrimPrefix(p, module+"/")
}

func layer(pkg string) int {
	switch {
	case pkg == "main":
		return 0
	case strings.HasPrefix(pkg, "tools/"):
		return 0
	case strings.HasPrefix(pkg, "modes/"):
		return 1
	case strings.HasPrefix(pkg, "core/"), strings.HasPrefix(pkg, "embed"):
		return 2
	case strings.HasPrefix(pkg, "backends"):
		return 3
	}
	return 4
}

func check(pkg, imp string) string {
	if strings.HasPrefix(imp, module) {
		target := rel(imp)
		if layer(target) < layer(pkg) {
			return "imports must point down (main → modes → core → backends)"
		}
		if layer(pkg) == 1 && layer(target) == 1 && !samePkgTree(pkg, target) {
			return "a mode never imports another mode"
		}
		return ""
	}
	for prefix, allowed := range owners {
		if !strings.HasPrefix(imp, prefix) {
			continue
		}
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a) || strings.HasPrefix(pkg, "tools/") {
				return ""
			}
		}
		return fmt.Sprintf("only %s may import it", strings.Join(allowed, ", "))
	}
	return ""
}

func samePkgTree(a, b string) bool {
	return strings.Split(a, "/")[1] == strings.Split(b, "/")[1]
}
