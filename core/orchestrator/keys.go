package orchestrator

import (
	"math"

	"github.com/llorch/llorch/core/api"
)

// Managed keys, the server's side: what a change of keys (auth.go) does to
// tasks. Revoking a key ends its queued tasks at once with KEY_REVOKED; its
// running tasks finish, and streams open on them stay until they end.
//
// Queued tasks are found through their owner (the key's hash) in the tasks'
// table, then taken out of the dispatcher's queue and failed under the
// dispatcher's lock, so that none of them starts meanwhile. A task admitted
// while its key was being revoked is caught by whichever comes second: the
// revocation's sweep (which finds it in the table) or submit's check after
// the task is in the table (which finds the key revoked).

// errRevoked is how a task of a revoked key ends.
func errRevoked() *api.Error {
	return api.Errorf(api.CodeKeyRevoked, "the task's API key was revoked before the task started")
}

// KeysRequired reports whether clients need a key: the key file has one, or
// the store holds one (revoked ones count). Without keys every client is an
// anonymous admin, which CheckBind allows on loopback only.
func (s *Server) KeysRequired() bool { return !s.auth.open() }

// keysLoaded logs the keys New loaded and ends the restored queued tasks of
// keys revoked since they were admitted.
func (s *Server) keysLoaded() {
	ks := s.auth.cur.Load()
	var stored, revoked int
	for _, e := range ks.list {
		switch {
		case e.source == sourceFile:
			s.log.Info("api key loaded", "key", e.p.fp, "role", e.p.role, "name", e.p.name, "source", sourceFile)
		case e.revoked != nil:
			revoked++
		default:
			stored++
		}
	}
	if stored+revoked > 0 {
		s.log.Info("stored api keys loaded", "keys", stored, "revoked", revoked)
	}
	if !ks.open && s.cfg.WorkerToken == "" {
		s.log.Warn("API keys are set but no worker token: workers cannot register (give --worker-token)")
	}
	for _, e := range ks.list {
		if e.revoked != nil {
			s.endQueuedOf(e.p.owner)
		}
	}
}

// endIfRevoked ends task id, just admitted for p, if p's key was revoked
// meanwhile.
func (s *Server) endIfRevoked(p principal, id string) {
	if p.owner != "" && s.auth.revokedOwner(p.owner) {
		s.disp.endQueued([]string{id}, errRevoked())
	}
}

// endQueuedOf ends the queued tasks of the key with owner; it returns how
// many.
func (s *Server) endQueuedOf(owner string) int {
	var ids []string
	for _, t := range s.tasks.list(principal{role: RoleUser, owner: owner}, taskFilter{status: api.TaskQueued, limit: math.MaxInt}) {
		ids = append(ids, t.TaskID)
	}
	if len(ids) == 0 {
		return 0
	}
	return s.disp.endQueued(ids, errRevoked())
}

// endQueued ends the tasks of ids that have no attempt running with e: out
// of the queue (or out of their wait before another attempt) and failed,
// under the dispatcher's lock so that none starts meanwhile. It returns how
// many it ended.
func (d *dispatcher) endQueued(ids []string, e *api.Error) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, id := range ids {
		if en, ok := d.q.Remove(id); ok {
			d.countLocked(en, -1)
		} else if d.running[id] != nil {
			continue // running: it may finish
		}
		// Not in the queue and not running: waiting before its next
		// attempt (requeueLocked does not put back a task that ended), or
		// ended already (fail does nothing then).
		if d.tasks.active(id) {
			d.tasks.fail(id, e)
			n++
		}
	}
	return n
}
