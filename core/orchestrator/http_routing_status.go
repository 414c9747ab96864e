package orchestrator

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// handleRoutingStatus answers GET /v2/routing: the script in force, or that
// none is (200 either way: the dashboard shows both without an error), and
// the built-in policy as a script.
func (s *Server) handleRoutingStatus(c echo.Context) error {
	rs := api.RoutingStatus{Default: string(s.deps.DefaultRoutingScript)}
	if name, src, ok := s.routing.Source(); ok {
		rs.Loaded, rs.Name, rs.Source = true, name, string(src)
	}
	return c.JSON(http.StatusOK, rs)
}
