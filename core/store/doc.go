// Package store keeps llorch's state in bbolt files. One file per database,
// one schema file per database (pool.go for a pool host), every bucket declared
// once, a meta/version key with migrations, and an open timeout that says
// "already in use?" instead of hanging.
package store
