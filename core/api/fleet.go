package api

import (
	"encoding/json"
	"fmt"
	"net"
	"path"
	"strings"
	"time"
)

// Fleet wire types: pools the orchestrator drives, models as desired state,
// what a pool reports about itself (`llorch pool status --json`), and fleet
// events. The same JSON is the fleet file's schema (YAML goes through JSON).

// Pool transports.
const (
	TransportLocal = "local"
	TransportSSH   = "ssh"
)

// Pool states as the orchestrator sees them.
const (
	PoolOK          = "ok"
	PoolUnreachable = "unreachable" // SSH failed, including an unknown or changed host key
	PoolError       = "error"       // reachable, but `llorch pool status` failed
	PoolUnknown     = "unknown"     // not refreshed yet
)

// Model states (GET /v2/models).
const (
	ModelReady       = "ready"       // at least min_replicas ready (or idle with min 0)
	ModelStarting    = "starting"    // a replica is being started
	ModelIdle        = "idle"        // no replica and none wanted now
	ModelFailing     = "failing"     // crash loop or load failure; see last_error
	ModelUnplaceable = "unplaceable" // fits on no pool; see last_error
)

// Pool is a host the orchestrator drives with the pool's own commands
// (`llorch pool … --json`): over SSH, or as a local child process.
type Pool struct {
	Name      string `json:"name"`
	Transport string `json:"transport,omitempty"` // local or ssh (default ssh when host is set, else local)
	// Host is an ~/.ssh/config alias, host, user@host or user@host:port (ssh only).
	Host string `json:"host,omitempty"`
	// LlorchPath is the llorch binary on the host (default: found on PATH or
	// in ~/.local/bin; for local pools this executable).
	LlorchPath string `json:"llorch_path,omitempty"`
	// PoolDir is the pool directory on the host (default: the pool's own default).
	PoolDir string            `json:"pool_dir,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Install copies this build (binary and lib/llorch) to the host when it
	// lacks llorch or has another version.
	Install bool `json:"install,omitempty"`
	// MemoryLimitBytes, when set, caps what the orchestrator places on the
	// pool below what the host reports free.
	MemoryLimitBytes uint64 `json:"memory_limit_bytes,omitempty"`
	// WorkerHost is the address the pool's workers listen on and advertise
	// (default 127.0.0.1 for a local pool; 0.0.0.0 on an ssh host, where
	// they advertise the host's name and need the worker token).
	WorkerHost string `json:"worker_host,omitempty"`
}

// Validate checks a pool record and fills the transport.
func (p *Pool) Validate() *Error {
	var fe []FieldError
	add := func(field, constraint, msg string) {
		fe = append(fe, FieldError{Field: field, Constraint: constraint, Message: msg})
	}
	if why := CheckID(p.Name); why != "" {
		add("name", "id", why)
	}
	if p.Transport == "" {
		p.Transport = TransportLocal
		if p.Host != "" {
			p.Transport = TransportSSH
		}
	}
	switch p.Transport {
	case TransportSSH:
		if p.Host == "" || len(p.Host) > 255 || !printableASCII(p.Host) || strings.ContainsAny(p.Host, " \t") || strings.HasPrefix(p.Host, "-") {
			add("host", "host", "is required for ssh: an ssh host or alias (no spaces, not starting with -)")
		}
	case TransportLocal:
		if p.Host != "" {
			add("host", "empty", "must be empty for a local pool")
		}
	default:
		add("transport", "enum", "must be local or ssh")
	}
	if h := p.WorkerHost; h != "" && !hostOrIP(h) {
		add("worker_host", "host", "must be an IP address or a host name")
	}
	for _, f := range []struct{ name, v string }{{"llorch_path", p.LlorchPath}, {"pool_dir", p.PoolDir}} {
		if len(f.v) > 1024 || !printableASCII(f.v) || strings.HasPrefix(f.v, "-") {
			add(f.name, "path", "must be printable, at most 1024 bytes, and not start with -")
		}
	}
	// The binary the fleet runs on a host, and overwrites there with
	// install: a file named llorch…, never another program or file.
	if base := path.Base(p.LlorchPath); p.LlorchPath != "" && (!strings.HasPrefix(base, "llorch") || strings.HasSuffix(p.LlorchPath, "/")) {
		add("llorch_path", "llorch*", "must name a file called llorch (or llorch-…): the fleet runs it and installs over it")
	}
	if why := checkLabels(p.Labels); why != "" {
		add("labels", "labels", why)
	}
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid pool", Fields: fe}
}

// hostOrIP: an IP address, or a DNS name of letters, digits, - and .
// (not starting with -).
func hostOrIP(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 || h[0] == '-' || h[0] == '.' {
		return false
	}
	return strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == ""
}

// PoolStatus is what `llorch pool status --json` prints: the pool's own view
// of its host. The orchestrator keeps the last one as the pool's inventory.
type PoolStatus struct {
	PoolDir  string `json:"pool_dir"`
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	// Version is the llorch version of the binary that answered.
	Version       string        `json:"version"`
	RAMTotalBytes uint64        `json:"ram_total_bytes"`
	RAMFreeBytes  uint64        `json:"ram_free_bytes"` // MemAvailable
	Backends      []PoolBackend `json:"backends"`
	Models        []PoolModel   `json:"models"`
	Workers       []PoolWorker  `json:"workers"`
}

// PoolBackend is one backend on a pool host.
type PoolBackend struct {
	Name      string       `json:"name"`
	Available bool         `json:"available"`
	Reason    string       `json:"reason,omitempty"`
	Devices   []PoolDevice `json:"devices,omitempty"`
}

// PoolDevice is one GPU.
type PoolDevice struct {
	Index          int    `json:"index"`
	Name           string `json:"name"`
	VRAMTotalBytes uint64 `json:"vram_total_bytes"`
	VRAMFreeBytes  uint64 `json:"vram_free_bytes"`
}

// PoolModel is a model in a pool's catalog.
type PoolModel struct {
	ID        string `json:"id"`
	Ref       string `json:"ref"`
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	SizeBytes int64  `json:"size_bytes"`
}

// PoolWorker is a worker process a pool spawned.
type PoolWorker struct {
	ID         string `json:"id"`
	PID        int    `json:"pid"`
	URL        string `json:"url"`
	Model      string `json:"model"`
	Backend    string `json:"backend"`
	Slots      int    `json:"slots"`
	Alive      bool   `json:"alive"`
	Status     string `json:"status"` // the worker's /health status, or unreachable / dead
	SlotsBusy  int    `json:"slots_busy"`
	SlotsTotal int    `json:"slots_total"`
	RSSBytes   uint64 `json:"rss_bytes,omitempty"`
	LogPath    string `json:"log_path,omitempty"`
}

// PoolView is a pool as GET /v2/pools[/{name}] shows it.
type PoolView struct {
	Pool
	State string `json:"state"`
	// LastError is why the last refresh failed; for an unknown or changed
	// host key it names the key's fingerprint.
	LastError   string      `json:"last_error,omitempty"`
	RefreshedAt time.Time   `json:"refreshed_at,omitzero"`
	Inventory   *PoolStatus `json:"inventory,omitempty"`
}

// Duration is a time.Duration that reads and writes as "90s" / "5m".
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "5m", or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("duration: want a string like \"5m\" or seconds")
		}
		if secs < 0 || secs > 1e9 {
			return fmt.Errorf("duration: out of range")
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// ModelSpec is a model as desired state: PUT /v2/models/{id}, or an entry of
// a fleet file.
type ModelSpec struct {
	ID string `json:"id"`
	// Source is hf:ORG/REPO/FILE.gguf[@REV], https://…, or file:/abs/path.gguf
	// (a path on the pool host).
	Source      string `json:"source"`
	SHA256      string `json:"sha256,omitempty"`
	MinReplicas int    `json:"min_replicas"`
	MaxReplicas int    `json:"max_replicas,omitempty"` // default max(1, min_replicas)
	// IdleTTL stops replicas above min_replicas idle this long (default 10m).
	IdleTTL Duration `json:"idle_ttl,omitempty"`
	Ctx     int      `json:"ctx,omitempty"`     // context per slot (default: the worker's)
	Slots   int      `json:"slots,omitempty"`   // default 4
	Backend string   `json:"backend,omitempty"` // cpu, cuda, metal (default cpu)
	// Embedding declares an embedding model: its replicas are embedding
	// workers (llorch worker --embedding), which serve POST /v1/embeddings
	// and no text generation.
	Embedding bool `json:"embedding,omitempty"`
	// Pools, when set, are the only pools the model may run on; Labels, when
	// set, must all match a pool's labels.
	Pools  []string          `json:"pools,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Limits of a model spec.
const (
	MaxReplicasLimit = 64
	MaxSlotsLimit    = 256
	MaxCtxLimit      = 1 << 20
)

// Validate checks a model spec and fills its defaults.
func (m *ModelSpec) Validate() *Error {
	var fe []FieldError
	add := func(field, constraint, msg string) {
		fe = append(fe, FieldError{Field: field, Constraint: constraint, Message: msg})
	}
	if why := CheckID(m.ID); why != "" {
		add("id", "id", why)
	}
	if m.Source == "" || len(m.Source) > 2048 || !printableASCII(m.Source) || strings.ContainsAny(m.Source, " \t") {
		add("source", "ref", "is required: hf:ORG/REPO/FILE.gguf[@REV], https://…, or file:/abs/path.gguf")
	} else if !strings.HasPrefix(m.Source, "hf:") && !strings.HasPrefix(m.Source, "https://") && !strings.HasPrefix(m.Source, "http://") && !strings.HasPrefix(m.Source, "file:") {
		add("source", "ref", "must start with hf:, https://, http:// or file:")
	} else if strings.HasPrefix(m.Source, "hf:") && !strings.Contains(m.Source, "@") {
		m.Source += "@main" // the revision a pool's catalog records
	}
	if m.SHA256 != "" && (len(m.SHA256) != 64 || strings.Trim(strings.ToLower(m.SHA256), "0123456789abcdef") != "") {
		add("sha256", "hex64", "must be 64 hex digits")
	}
	m.SHA256 = strings.ToLower(m.SHA256)
	if m.MinReplicas < 0 || m.MinReplicas > MaxReplicasLimit {
		add("min_replicas", fmt.Sprintf("0..%d", MaxReplicasLimit), "out of range")
	}
	if m.MaxReplicas == 0 {
		m.MaxReplicas = max(1, m.MinReplicas)
	}
	if m.MaxReplicas < 1 || m.MaxReplicas > MaxReplicasLimit || m.MaxReplicas < m.MinReplicas {
		add("max_replicas", fmt.Sprintf("min_replicas..%d", MaxReplicasLimit), "must be at least min_replicas and at most the limit")
	}
	if m.IdleTTL == 0 {
		m.IdleTTL = Duration(10 * time.Minute)
	}
	if m.IdleTTL < 0 || time.Duration(m.IdleTTL) > 365*24*time.Hour {
		add("idle_ttl", "0..8760h", "out of range")
	}
	if m.Ctx < 0 || m.Ctx > MaxCtxLimit {
		add("ctx", fmt.Sprintf("0..%d", MaxCtxLimit), "out of range")
	}
	if m.Slots == 0 {
		m.Slots = 4
	}
	if m.Slots < 1 || m.Slots > MaxSlotsLimit {
		add("slots", fmt.Sprintf("1..%d", MaxSlotsLimit), "out of range")
	}
	if m.Backend == "" {
		m.Backend = "cpu"
	}
	switch m.Backend {
	case "cpu", "cuda", "metal":
	default:
		add("backend", "enum", "must be cpu, cuda or metal")
	}
	if len(m.Pools) > 256 {
		add("pools", "<=256", "too many pools")
	}
	for _, p := range m.Pools {
		if why := CheckID(p); why != "" {
			add("pools", "id", "pool name "+why)
		}
	}
	if why := checkLabels(m.Labels); why != "" {
		add("labels", "labels", why)
	}
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid model", Fields: fe}
}

// ModelView is a declared model as GET /v2/models[/{id}] shows it.
type ModelView struct {
	ModelSpec
	State    string         `json:"state"`
	Replicas ReplicaCounts  `json:"replicas"`
	Workers  []ModelReplica `json:"workers"`
	Fit      *ModelFit      `json:"fit,omitempty"`
	// LastError is why the model is failing or unplaceable; LastLog the last
	// lines of a crashed worker's log.
	LastError string   `json:"last_error,omitempty"`
	LastLog   []string `json:"last_log,omitempty"`
	// ColdStartMs is the last measured start (spawn to ready), used for
	// predicted_start_ms of tasks that wait for a start.
	ColdStartMs int64 `json:"cold_start_ms,omitempty"`
}

// ReplicaCounts are a model's replicas by phase.
type ReplicaCounts struct {
	Desired  int `json:"desired"`
	Starting int `json:"starting"`
	Ready    int `json:"ready"`
}

// ModelReplica is one worker of a declared model.
type ModelReplica struct {
	WorkerID string `json:"worker_id"`
	Pool     string `json:"pool"`
	State    string `json:"state"` // starting, downloading, loading, ready, draining, stopping
	Source   string `json:"source,omitempty"`
}

// ModelFit is a model's memory need: the estimate from its GGUF header, the
// learned correction (actual ÷ estimate, per digest × backend × ctx × slots)
// and the last measured use.
type ModelFit struct {
	EstimateBytes uint64  `json:"estimate_bytes"`
	Correction    float64 `json:"correction"`
	NeedBytes     uint64  `json:"need_bytes"` // estimate × correction: what placement uses
	ActualBytes   uint64  `json:"actual_bytes,omitempty"`
}

// FleetFile is the declarative form: `orchestrate --fleet`, `ctl fleet apply -f`.
type FleetFile struct {
	Pools  []Pool      `json:"pools"`
	Models []ModelSpec `json:"models"`
}

// Validate checks every entry and that names are unique.
func (f *FleetFile) Validate() error {
	seen := map[string]bool{}
	for i := range f.Pools {
		if e := f.Pools[i].Validate(); e != nil {
			return fmt.Errorf("pools[%d] %q: %s", i, f.Pools[i].Name, e.Error())
		}
		if seen["p/"+f.Pools[i].Name] {
			return fmt.Errorf("pools[%d]: %q is declared twice", i, f.Pools[i].Name)
		}
		seen["p/"+f.Pools[i].Name] = true
	}
	for i := range f.Models {
		if e := f.Models[i].Validate(); e != nil {
			return fmt.Errorf("models[%d] %q: %s", i, f.Models[i].ID, e.Error())
		}
		if seen["m/"+f.Models[i].ID] {
			return fmt.Errorf("models[%d]: %q is declared twice", i, f.Models[i].ID)
		}
		seen["m/"+f.Models[i].ID] = true
	}
	return nil
}

// Fleet event kinds (GET /v2/events).
const (
	EventInventory      = "inventory"       // a pool refreshed (only when its state changed)
	EventInventoryError = "inventory_error" // a pool could not be refreshed
	EventInstall        = "install"         // llorch installed on a pool
	EventDownload       = "download"        // a download started (progress events follow)
	EventDownloaded     = "downloaded"      // a download finished
	EventSpawn          = "spawn"           // a worker process was started
	EventReady          = "ready"           // a started worker registered
	EventCrash          = "crash"           // a fleet worker died or failed to load
	EventRestart        = "restart"         // a replacement start after a crash (with backoff)
	EventStop           = "stop"            // a worker was drained and stopped
	EventAdopt          = "adopt"           // a running worker was adopted after a restart
	EventUnplaceable    = "unplaceable"     // a start found no pool with room
	EventRollout        = "rollout"         // a rolling change step or rollback
)

// FleetEvent is one journaled fleet action.
type FleetEvent struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Pool   string    `json:"pool,omitempty"`
	Model  string    `json:"model,omitempty"`
	Worker string    `json:"worker,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Capabilities is GET /v2/meta/capabilities: what this orchestrator serves.
type Capabilities struct {
	APIVersion string            `json:"api_version"`
	Version    string            `json:"version"`
	Models     []CapabilityModel `json:"models"`
	Limits     CapabilityLimits  `json:"limits"`
	Features   []string          `json:"features"`
}

// CapabilityModel is one model a client may ask for.
type CapabilityModel struct {
	ID       string `json:"id"`
	Ctx      int    `json:"ctx,omitempty"`
	State    string `json:"state"`
	Declared bool   `json:"declared"`
}

// CapabilityLimits are the limits a client should respect.
type CapabilityLimits struct {
	// QueueCapacity bounds each priority class of the queue.
	QueueCapacity int `json:"queue_capacity"`
	// DefaultMaxTokens is max_tokens when a request gives none; a model's
	// ctx bounds it.
	DefaultMaxTokens int `json:"default_max_tokens"`
	MaxRequestBytes  int `json:"max_request_bytes"`
	MaxStop          int `json:"max_stop"`
}
