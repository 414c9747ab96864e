// Package queue is the orchestrator's bounded two-class task queue, fair
// across keys within each class.
//
// Tasks are Interactive or Batch, and each is queued for a Key (an API key's
// name and its weight, 1..MaxWeight). Each class holds at most
// Config.Capacity tasks.
//
// # Fair queueing
//
// Within a class the queue is start-time fair queueing (SFQ) over one FIFO
// per key. Every task gets a virtual start tag when it is pushed:
//
//	start  = max(V, finish of the key's previous task)
//	finish = start + 1/weight          (in integer units of 1/2^20)
//
// and the class's order is its tasks by start tag, then enqueue order. Tags
// never decrease along a key's FIFO, so each key stays FIFO, and the order
// is a merge of the keys' FIFOs by their heads: a key of weight 3 gets three
// tasks for each one of a key of weight 1 while both have tasks queued,
// whatever they queued and when. A key with 1,000 tasks queued and a key
// with 1 do not wait in arrival order: the light key's task is next, or the
// one after.
//
// V, the class's virtual time, is the start tag of the last task taken for
// dispatch (Take). A key that returns after idling starts at V, level with
// the keys that kept tasks queued: it cannot bank service it did not use.
// Removing a task (a cancel) does not move V. The dispatcher walks the order
// and may skip tasks it cannot place yet (no free worker for their model, a
// key at its max_running) and Take later ones: V follows what was actually
// served, so the skipped key keeps its small tags and is first again once it
// can be placed, while the keys behind it are served meanwhile.
//
// # Classes and promotion
//
// Dispatch order is interactive's fair order, with batch's fair order after
// it, except that a batch task at the head of batch's order that has waited
// at least Config.StarvationLimit ("promoted") goes before the interactive
// tasks enqueued after it. Promotion is computed from the now passed in, so
// the same queue and the same now always give the same order.
//
// # Capacity
//
// When a class is full, Config.Policy decides: Reject refuses the new task
// (ErrFull); DropLRU evicts the oldest batch task of the key with the most
// batch tasks queued (and says which key), so an interactive task can
// displace batch work but never another interactive task, and a flood pays
// for room before anyone else. The queue never holds more than 2*Capacity
// tasks. Readmit and Restore queue whatever the capacity: their tasks were
// admitted before.
//
// # Cost
//
// Each key's FIFO is an intrusive doubly linked list; a min-heap per class
// holds the non-empty FIFOs by head, and an index maps ids to nodes. Push,
// Take and Remove are O(log keys), Front O(1), Get O(1); Each and Position
// walk the order with a heap of cursors, O(n log keys). Removed nodes are
// recycled, so a queue in steady state does not allocate. The queue does no
// locking and reads no clock: the orchestrator calls it under its own mutex
// with its own now.
//
//	q := queue.New[*Task](queue.Config{Capacity: 256, StarvationLimit: 30 * time.Second, Policy: queue.DropLRU})
//	d, dropped, err := q.Push(t.ID, queue.Interactive, queue.Key{Name: "team-a", Weight: 2}, now, t)
//	q.Each(now, func(pos int, id string, t *Task) bool { ...; return true })
package queue
