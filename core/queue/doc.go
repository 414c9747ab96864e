// Package queue is the orchestrator's bounded two-class task queue.
//
// Tasks are Interactive or Batch. Each class holds at most Config.Capacity
// tasks and is FIFO. Dispatch order is: interactive tasks, together with batch
// tasks that have waited at least Config.StarvationLimit ("promoted"), merged
// in enqueue order; then the remaining batch tasks in enqueue order. Promotion
// is computed from the now passed in, so the same queue and the same now always
// give the same order.
//
// When a class is full, Config.Policy decides: Reject refuses the new task
// (ErrFull); DropLRU evicts the oldest batch task to make room, so an
// interactive task can displace batch work but never another interactive
// task. The queue never holds more than 2*Capacity tasks.
//
// Each class is an intrusive doubly linked list and an index maps ids to list
// nodes, so Push, Remove, Get and Front are O(1); Each and Position walk the
// queue. Removed nodes are recycled, so a queue in steady state does not
// allocate. The queue does no locking and reads no clock: the orchestrator
// calls it under its own mutex with its own now.
//
//	q := queue.New[*Task](queue.Config{Capacity: 256, StarvationLimit: 30 * time.Second, Policy: queue.DropLRU})
//	dropID, dropped, didDrop, err := q.Push(t.ID, queue.Interactive, now, t)
//	q.Each(now, func(pos int, id string, t *Task) bool { ...; return true })
package queue
