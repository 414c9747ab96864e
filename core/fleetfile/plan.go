package fleetfile

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
)

// Kind is what a change does.
type Kind string

// Change kinds.
const (
	Create    Kind = "create"
	Update    Kind = "update"
	Delete    Kind = "delete"
	Unchanged Kind = "unchanged"
)

// Object is what a change is about.
type Object string

// Objects.
const (
	ObjPool  Object = "pool"
	ObjModel Object = "model"
)

// Change is one step of a plan.
type Change struct {
	Kind   Kind   `json:"kind"`
	Object Object `json:"object"`
	Name   string `json:"name"`
	// Diff lists what an update changes, one "field: old → new" each; for a
	// create, the fields set ("field value").
	Diff []string `json:"diff,omitempty"`
	// NotInFile marks an object the orchestrator has and the file does not
	// declare, kept because the plan was made without prune.
	NotInFile bool `json:"not_in_file,omitempty"`
	// Pool or Model is the wanted object of a create or update (defaults
	// filled), what Apply sends.
	Pool  *api.Pool      `json:"pool,omitempty"`
	Model *api.ModelSpec `json:"model,omitempty"`
}

// Current is what the orchestrator holds.
type Current struct {
	Pools  []api.Pool
	Models []api.ModelSpec
}

// CurrentFrom takes the declared parts of the orchestrator's views.
func CurrentFrom(pools []api.PoolView, models []api.ModelView) Current {
	var c Current
	for _, p := range pools {
		c.Pools = append(c.Pools, p.Pool)
	}
	for _, m := range models {
		c.Models = append(c.Models, m.ModelSpec)
	}
	return c
}

// Plan compares the wanted fleet with the current one, both with defaults
// filled, and returns every object's change: creates and updates of pools,
// then of models (in the file's order), then deletes of models, then of pools
// (by name). Objects only the orchestrator has are deleted with prune, else
// listed as Unchanged with NotInFile.
func Plan(cur Current, want api.FleetFile, prune bool) []Change {
	var out []Change
	curPools := map[string]api.Pool{}
	for _, p := range cur.Pools {
		curPools[p.Name] = normPool(p)
	}
	curModels := map[string]api.ModelSpec{}
	for _, m := range cur.Models {
		curModels[m.ID] = normModel(m)
	}
	wantPools, wantModels := map[string]bool{}, map[string]bool{}
	for _, p := range want.Pools {
		p = normPool(p)
		wantPools[p.Name] = true
		out = append(out, change(ObjPool, p.Name, curPools, p, func(c *Change, v api.Pool) { c.Pool = &v }))
	}
	for _, m := range want.Models {
		m = normModel(m)
		wantModels[m.ID] = true
		out = append(out, change(ObjModel, m.ID, curModels, m, func(c *Change, v api.ModelSpec) { c.Model = &v }))
	}
	gone := func(obj Object, names []string, wanted map[string]bool) {
		for _, n := range names {
			if wanted[n] {
				continue
			}
			if prune {
				out = append(out, Change{Kind: Delete, Object: obj, Name: n})
			} else {
				out = append(out, Change{Kind: Unchanged, Object: obj, Name: n, NotInFile: true})
			}
		}
	}
	gone(ObjModel, sortedKeys(curModels), wantModels)
	gone(ObjPool, sortedKeys(curPools), wantPools)
	return out
}

func change[T any](obj Object, name string, cur map[string]T, want T, set func(*Change, T)) Change {
	c := Change{Object: obj, Name: name}
	old, ok := cur[name]
	switch {
	case !ok:
		c.Kind = Create
		for _, f := range fields(want) {
			if f.name != "name" && f.name != "id" && f.text != "" {
				c.Diff = append(c.Diff, f.name+" "+f.text)
			}
		}
	default:
		c.Diff = diff(old, want)
		c.Kind = Unchanged
		if len(c.Diff) > 0 {
			c.Kind = Update
		}
	}
	if c.Kind != Unchanged {
		set(&c, want)
	}
	return c
}

// normPool and normModel fill defaults (Validate) and put sets in order, so
// that equal declarations compare equal.
func normPool(p api.Pool) api.Pool {
	p.Labels = maps(p.Labels)
	_ = p.Validate()
	return p
}

func normModel(m api.ModelSpec) api.ModelSpec {
	m.Labels = maps(m.Labels)
	if len(m.Pools) == 0 {
		m.Pools = nil
	} else {
		m.Pools = slices.Clone(m.Pools)
		sort.Strings(m.Pools)
	}
	_ = m.Validate()
	return m
}

func maps(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

type field struct{ name, text string }

// fields are v's json fields in declaration order with their values as a
// plan shows them ("" for a zero value).
func fields(v any) []field {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	var out []field
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, field{name, show(rv.Field(i))})
	}
	return out
}

var durationType = reflect.TypeFor[api.Duration]()

func show(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		return quoteIfOdd(v.String())
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = show(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case v.Kind() == reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = quoteIfOdd(k) + "=" + quoteIfOdd(v.MapIndex(reflect.ValueOf(k)).String())
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v.Interface())
}

// quoteIfOdd quotes a string that is empty or holds anything but printable
// ASCII without spaces and commas, so that a plan line reads one way only.
func quoteIfOdd(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ',' || c == '"' || c == '=' || c == '{' || c == '}' || c == '[' || c == ']' {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

func diff[T any](old, want T) []string {
	var out []string
	of, wf := fields(old), fields(want)
	for i := range wf {
		if of[i].text != wf[i].text {
			out = append(out, fmt.Sprintf("%s: %s → %s", wf[i].name, none(of[i].text), none(wf[i].text)))
		}
	}
	return out
}

func none(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// HasChanges reports whether a plan does anything.
func HasChanges(plan []Change) bool {
	for _, c := range plan {
		if c.Kind != Unchanged {
			return true
		}
	}
	return false
}

// Counts are a plan's changes by kind.
func Counts(plan []Change) (create, update, del, notInFile int) {
	for _, c := range plan {
		switch {
		case c.Kind == Create:
			create++
		case c.Kind == Update:
			update++
		case c.Kind == Delete:
			del++
		case c.NotInFile:
			notInFile++
		}
	}
	return
}

// FormatPlan prints a plan for a person: "+ model qwen (source …, slots 4)",
// "~ model tiny: slots: 4 → 8", "- pool old", then a summary line; "no
// changes" when there is nothing to do.
func FormatPlan(w io.Writer, plan []Change) error {
	var b strings.Builder
	for _, c := range plan {
		switch c.Kind {
		case Create:
			fmt.Fprintf(&b, "+ %s %s", c.Object, c.Name)
			if len(c.Diff) > 0 {
				fmt.Fprintf(&b, " (%s)", strings.Join(c.Diff, ", "))
			}
			b.WriteString("\n")
		case Update:
			if len(c.Diff) == 1 {
				fmt.Fprintf(&b, "~ %s %s: %s\n", c.Object, c.Name, c.Diff[0])
				continue
			}
			fmt.Fprintf(&b, "~ %s %s\n", c.Object, c.Name)
			for _, d := range c.Diff {
				fmt.Fprintf(&b, "    %s\n", d)
			}
		case Delete:
			fmt.Fprintf(&b, "- %s %s\n", c.Object, c.Name)
		}
	}
	create, update, del, kept := Counts(plan)
	if create+update+del == 0 {
		b.WriteString("no changes\n")
	} else {
		fmt.Fprintf(&b, "plan: %d to create, %d to update, %d to delete\n", create, update, del)
	}
	if kept > 0 {
		var names []string
		for _, c := range plan {
			if c.NotInFile {
				names = append(names, string(c.Object)+" "+c.Name)
			}
		}
		fmt.Fprintf(&b, "not in the file, kept (--prune deletes them): %s\n", strings.Join(names, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Writer is what Apply needs of the orchestrator (orchclient.Client has it).
type Writer interface {
	PutPool(ctx context.Context, p api.Pool) (api.PoolView, error)
	PutModel(ctx context.Context, m api.ModelSpec) (api.ModelView, error)
	DeleteModel(ctx context.Context, id string) error
	DeletePool(ctx context.Context, name string) error
}

// Apply carries out a plan in its order, printing one line per step to log
// (nil: silent). It stops at the first error, which names the step; steps
// before it stay done (apply again to continue).
func Apply(ctx context.Context, w Writer, plan []Change, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	for _, c := range plan {
		var err error
		switch {
		case c.Kind == Create || c.Kind == Update:
			switch {
			case c.Object == ObjPool && c.Pool != nil:
				_, err = w.PutPool(ctx, *c.Pool)
			case c.Object == ObjModel && c.Model != nil:
				_, err = w.PutModel(ctx, *c.Model)
			default:
				err = fmt.Errorf("fleetfile: %s %s %s has no object", c.Kind, c.Object, c.Name)
			}
		case c.Kind == Delete && c.Object == ObjModel:
			err = w.DeleteModel(ctx, c.Name)
		case c.Kind == Delete && c.Object == ObjPool:
			err = w.DeletePool(ctx, c.Name)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %s %s: %w", c.Kind, c.Object, c.Name, err)
		}
		fmt.Fprintf(log, "%sd %s %s\n", c.Kind, c.Object, c.Name) // created, updated, deleted
	}
	return nil
}
