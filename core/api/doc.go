// Package api holds the wire types shared by llorch's daemons and clients: worker
// execute requests, stream events, health reports and errors. It uses the standard
// library only, so that any client can import it cheaply.
package api
