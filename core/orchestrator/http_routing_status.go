package orchestrator

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// handleRoutingStatus answers GET /v2/routing: the script in force, or that
// none is (200 either way: the dashboard shows both without an error).
func (s *Server) handleRoutingStatus(c echo.Context) error {
	name, src, ok := s.routing.Source()
	if !ok {
		return c.JSON(http.StatusOK, api.RoutingStatus{})
	}
	return c.JSON(http.StatusOK, api.RoutingStatus{Loaded: true, Name: name, Source: string(src)})
}
