package orchestrator

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// maxUsageRange bounds GET /v2/usage's since..until.
const maxUsageRange = 400 * 24 * time.Hour

// usageQuery is GET /v2/usage's query, parsed.
type usageQuery struct {
	key, model   string
	since, until time.Time
}

// parseUsageQuery reads key, model, since and until (RFC 3339, or a
// duration back from now such as 24h; defaults: the last 24 hours), with
// every field error.
func parseUsageQuery(q func(string) string, now time.Time) (usageQuery, *api.Error) {
	uq := usageQuery{key: q("key"), model: q("model"), since: now.Add(-24 * time.Hour), until: now}
	var fe []api.FieldError
	for _, f := range []struct {
		name string
		v    string
	}{{"key", uq.key}, {"model", uq.model}} {
		if f.v != "" {
			if why := api.CheckID(f.v); why != "" {
				fe = append(fe, api.FieldError{Field: f.name, Constraint: "id", Message: why})
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &uq.since}, {"until", &uq.until}} {
		v := q(f.name)
		if v == "" {
			continue
		}
		if at, err := time.Parse(time.RFC3339, v); err == nil {
			*f.dst = at.UTC()
			continue
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= maxUsageRange {
			*f.dst = now.Add(-d)
			continue
		}
		fe = append(fe, api.FieldError{Field: f.name, Constraint: "time",
			Message: "must be an RFC 3339 time or a duration back from now (such as 24h) of at most 400 days"})
	}
	if len(fe) == 0 {
		switch {
		case !uq.since.Before(uq.until):
			fe = append(fe, api.FieldError{Field: "since", Constraint: "<until", Message: "must be before until"})
		case uq.until.Sub(uq.since) > maxUsageRange:
			fe = append(fe, api.FieldError{Field: "since", Constraint: "range", Message: "since..until spans at most 400 days"})
		}
	}
	if len(fe) > 0 {
		return usageQuery{}, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid usage query", Fields: fe}
	}
	return uq, nil
}

// handleUsage is GET /v2/usage: an admin sees every key's usage; a user key
// its own only (naming another key is 403).
func (s *Server) handleUsage(c echo.Context) error {
	uq, e := parseUsageQuery(c.QueryParam, time.Now().UTC())
	if e != nil {
		return writeError(c, e)
	}
	p := principalOf(c.Request().Context())
	if p.role != RoleAdmin {
		if uq.key != "" && uq.key != p.key {
			return writeError(c, &api.Error{Code: api.CodeForbidden, Message: "a user key sees only its own usage"})
		}
		uq.key = p.key
	}
	rows, err := s.st.Usage(store.UsageFilter{Key: uq.key, Model: uq.model, Since: uq.since, Until: uq.until})
	if err != nil {
		s.log.Error("reading usage", "err", err)
		return writeError(c, api.Errorf(api.CodeInternal, "cannot read usage"))
	}
	if rows == nil {
		rows = []api.UsageRow{}
	}
	return c.JSON(http.StatusOK, api.Usage{Since: store.HourOf(uq.since), Until: uq.until, Rows: rows, Totals: store.UsageTotals(rows)})
}
