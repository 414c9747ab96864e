package fleetfile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// Builders of valid objects that a test tweaks.
func pool(name string, tweak ...func(*api.Pool)) api.Pool {
	p := api.Pool{Name: name, Transport: api.TransportLocal}
	for _, f := range tweak {
		f(&p)
	}
	return p
}

func model(id string, tweak ...func(*api.ModelSpec)) api.ModelSpec {
	m := api.ModelSpec{ID: id, Source: "file:/models/" + id + ".gguf"}
	for _, f := range tweak {
		f(&m)
	}
	return m
}

// validated is what the orchestrator holds: the spec with defaults filled.
func validated(m api.ModelSpec) api.ModelSpec {
	if err := m.Validate(); err != nil {
		panic(err)
	}
	return m
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cur   Current
		want  api.FleetFile
		prune bool
		plan  string // FormatPlan's output
	}{
		{
			name: "empty to empty",
			plan: "no changes\n",
		},
		{
			name: "creates, pools before models",
			want: api.FleetFile{
				Models: []api.ModelSpec{model("qwen", func(m *api.ModelSpec) { m.MinReplicas = 1; m.Labels = map[string]string{"gpu": "true"} })},
				Pools:  []api.Pool{pool("gpu-a", func(p *api.Pool) { p.Transport, p.Host = "", "gpu-a.lan" })},
			},
			plan: "+ pool gpu-a (transport ssh, host gpu-a.lan)\n" +
				"+ model qwen (source file:/models/qwen.gguf, min_replicas 1, max_replicas 1, idle_ttl 10m0s, slots 4, backend cpu, labels {gpu=true})\n" +
				"plan: 2 to create, 0 to update, 0 to delete\n",
		},
		{
			name: "defaults on both sides compare equal",
			cur:  Current{Pools: []api.Pool{pool("p")}, Models: []api.ModelSpec{validated(model("m"))}},
			want: api.FleetFile{
				Pools:  []api.Pool{{Name: "p"}}, // transport local by default
				Models: []api.ModelSpec{model("m", func(m *api.ModelSpec) { m.Slots, m.Backend = 4, "" })},
			},
			plan: "no changes\n",
		},
		{
			name: "sets compare as sets, empty as absent",
			cur: Current{Models: []api.ModelSpec{validated(model("m", func(m *api.ModelSpec) {
				m.Pools = []string{"b", "a"}
				m.Labels = map[string]string{}
			}))}},
			want: api.FleetFile{Models: []api.ModelSpec{model("m", func(m *api.ModelSpec) { m.Pools = []string{"a", "b"} })}},
			plan: "no changes\n",
		},
		{
			name: "one field",
			cur:  Current{Models: []api.ModelSpec{validated(model("tiny"))}},
			want: api.FleetFile{Models: []api.ModelSpec{model("tiny", func(m *api.ModelSpec) { m.Slots = 8 })}},
			plan: "~ model tiny: slots: 4 → 8\nplan: 0 to create, 1 to update, 0 to delete\n",
		},
		{
			name: "an embedding model",
			want: api.FleetFile{Models: []api.ModelSpec{model("emb", func(m *api.ModelSpec) { m.Embedding = true })}},
			plan: "+ model emb (source file:/models/emb.gguf, max_replicas 1, idle_ttl 10m0s, slots 4, backend cpu, embedding true)\n" +
				"plan: 1 to create, 0 to update, 0 to delete\n",
		},
		{
			name: "a model becomes an embedding model",
			cur:  Current{Models: []api.ModelSpec{validated(model("emb"))}},
			want: api.FleetFile{Models: []api.ModelSpec{model("emb", func(m *api.ModelSpec) { m.Embedding = true })}},
			plan: "~ model emb: embedding: (none) → true\nplan: 0 to create, 1 to update, 0 to delete\n",
		},
		{
			name: "several fields",
			cur:  Current{Pools: []api.Pool{pool("p", func(p *api.Pool) { p.Labels = map[string]string{"zone": "a"} })}},
			want: api.FleetFile{Pools: []api.Pool{pool("p", func(p *api.Pool) {
				p.PoolDir = "/srv/pool dir"
				p.Labels = map[string]string{"zone": "b"}
			})}},
			plan: "~ pool p\n    pool_dir: (none) → \"/srv/pool dir\"\n    labels: {zone=a} → {zone=b}\nplan: 0 to create, 1 to update, 0 to delete\n",
		},
		{
			name: "without prune the rest is kept and named",
			cur:  Current{Pools: []api.Pool{pool("old"), pool("p")}, Models: []api.ModelSpec{validated(model("gone"))}},
			want: api.FleetFile{Pools: []api.Pool{pool("p")}},
			plan: "no changes\nnot in the file, kept (--prune deletes them): model gone, pool old\n",
		},
		{
			name:  "prune deletes models before pools",
			cur:   Current{Pools: []api.Pool{pool("z-old"), pool("a-old"), pool("p")}, Models: []api.ModelSpec{validated(model("gone"))}},
			want:  api.FleetFile{Pools: []api.Pool{pool("p")}, Models: []api.ModelSpec{model("new")}},
			prune: true,
			plan: "+ model new (source file:/models/new.gguf, max_replicas 1, idle_ttl 10m0s, slots 4, backend cpu)\n" +
				"- model gone\n- pool a-old\n- pool z-old\n" +
				"plan: 1 to create, 0 to update, 3 to delete\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Plan(tc.cur, tc.want, tc.prune)
			var b strings.Builder
			if err := FormatPlan(&b, plan); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.plan {
				t.Errorf("plan:\n-got\n%s+want\n%s", b.String(), tc.plan)
			}
			if HasChanges(plan) == strings.HasPrefix(tc.plan, "no changes\n") {
				t.Errorf("HasChanges = %v", HasChanges(plan))
			}
		})
	}
}

func TestPlanDoesNotChangeItsInput(t *testing.T) {
	want := api.FleetFile{Models: []api.ModelSpec{model("m", func(m *api.ModelSpec) { m.Pools = []string{"b", "a"} })}}
	_ = Plan(Current{}, want, false)
	if want.Models[0].Pools[0] != "b" || want.Models[0].Slots != 0 {
		t.Errorf("input changed: %+v", want.Models[0])
	}
}

// recorder is an in-memory orchestrator for Apply: it keeps what it is given
// and records each write.
type recorder struct {
	pools  map[string]api.Pool
	models map[string]api.ModelSpec
	writes []string
	failOn string
}

func (r *recorder) PutPool(_ context.Context, p api.Pool) (api.PoolView, error) {
	if err := r.write("put pool " + p.Name); err != nil {
		return api.PoolView{}, err
	}
	r.pools[p.Name] = p
	return api.PoolView{Pool: p}, nil
}

func (r *recorder) PutModel(_ context.Context, m api.ModelSpec) (api.ModelView, error) {
	if err := r.write("put model " + m.ID); err != nil {
		return api.ModelView{}, err
	}
	r.models[m.ID] = m
	return api.ModelView{ModelSpec: m}, nil
}

func (r *recorder) DeleteModel(_ context.Context, id string) error {
	delete(r.models, id)
	return r.write("delete model " + id)
}

func (r *recorder) DeletePool(_ context.Context, name string) error {
	delete(r.pools, name)
	return r.write("delete pool " + name)
}

func (r *recorder) write(w string) error {
	if w == r.failOn {
		return errors.New("refused")
	}
	r.writes = append(r.writes, w)
	return nil
}

func (r *recorder) current() Current {
	var c Current
	for _, k := range sortedKeys(r.pools) {
		c.Pools = append(c.Pools, r.pools[k])
	}
	for _, k := range sortedKeys(r.models) {
		c.Models = append(c.Models, r.models[k])
	}
	return c
}

func TestApplyTwiceWritesOnce(t *testing.T) {
	f, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{pools: map[string]api.Pool{"old": pool("old")}, models: map[string]api.ModelSpec{"gone": validated(model("gone"))}}
	var log strings.Builder
	if err := Apply(context.Background(), r, Plan(r.current(), f, true), &log); err != nil {
		t.Fatal(err)
	}
	want := "put pool gpu-a,put pool here,put model qwen,put model tiny,delete model gone,delete pool old"
	if got := strings.Join(r.writes, ","); got != want {
		t.Errorf("writes:\n-got  %s\n+want %s", got, want)
	}
	if !strings.Contains(log.String(), "created model qwen\n") || !strings.Contains(log.String(), "deleted pool old\n") {
		t.Errorf("log:\n%s", log.String())
	}
	r.writes = nil
	plan := Plan(r.current(), f, true)
	if HasChanges(plan) {
		t.Fatalf("second plan: %+v", plan)
	}
	if err := Apply(context.Background(), r, plan, nil); err != nil || len(r.writes) != 0 {
		t.Fatalf("second apply wrote %v (%v)", r.writes, err)
	}
	// One field changed in the file: one update.
	f.Models[1].IdleTTL = api.Duration(time.Hour)
	plan = Plan(r.current(), f, true)
	if err := Apply(context.Background(), r, plan, nil); err != nil || strings.Join(r.writes, ",") != "put model tiny" {
		t.Fatalf("update wrote %v (%v)", r.writes, err)
	}
}

func TestApplyStopsAtFirstError(t *testing.T) {
	r := &recorder{pools: map[string]api.Pool{}, models: map[string]api.ModelSpec{}, failOn: "put model a"}
	want := api.FleetFile{Pools: []api.Pool{pool("p")}, Models: []api.ModelSpec{model("a"), model("b")}}
	err := Apply(context.Background(), r, Plan(Current{}, want, false), nil)
	if err == nil || err.Error() != "create model a: refused" {
		t.Fatalf("err = %v", err)
	}
	if fmt.Sprint(r.writes) != "[put pool p]" {
		t.Errorf("writes = %v", r.writes)
	}
}
