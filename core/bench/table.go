package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable writes a report for people: what ran against what, then one
// row per step, then the errors by code.
func WriteTable(w io.Writer, rep Report) error {
	var b strings.Builder
	server := rep.Server
	if server == "" {
		server = "unknown version"
	}
	fmt.Fprintf(&b, "%s: %s %s, model %q (%s)\n", rep.Label, rep.API, rep.URL, rep.Model, server)
	wl := rep.Workload
	fmt.Fprintf(&b, "workload: prompt %s tokens, generate %s", wl.PromptTokens, wl.GenTokens)
	if wl.IgnoreEOS {
		b.WriteString(" (EOS ignored)")
	}
	if wl.SharedPrefix > 0 {
		fmt.Fprintf(&b, ", shared prefix %d", wl.SharedPrefix)
	}
	if wl.Sessions > 0 {
		fmt.Fprintf(&b, ", %d sessions × %d turns", wl.Sessions, wl.Turns)
	}
	if wl.Trace != "" {
		fmt.Fprintf(&b, ", trace %s at %gx", wl.Trace, wl.TraceSpeed)
	}
	fmt.Fprintf(&b, ", seed %d\n", wl.Seed)
	cal := "default, the server reported no prompt tokens"
	if wl.Calibrated {
		cal = fmt.Sprintf("calibrated, + %.0f tokens a request", wl.PromptOverhead)
	}
	fmt.Fprintf(&b, "prompts sized at %.2f tokens/word (%s); warm-up: %d requests before each step, not counted\n",
		wl.TokensPerWord, cal, rep.Warmup)
	if rep.SLO != (SLO{}) {
		fmt.Fprintf(&b, "goodput SLO:%s\n", sloText(rep.SLO))
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\treqs\tok\terr\tout tok/s\treq/s\tgood/s\tTTFT p50\tp90\tp99\tITL p50\tp90\tp99\tE2E p50\tp99\tprompt\tcached\t")
	for _, st := range rep.Steps {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t\n",
			StepName(st), st.Requests, st.OK, st.Requests-st.OK, st.OutputTokPerS, st.ReqPerS, st.Goodput,
			msText(st.TTFT.P50), msText(st.TTFT.P90), msText(st.TTFT.P99),
			msText(st.ITL.P50), msText(st.ITL.P90), msText(st.ITL.P99),
			msText(st.E2E.P50), msText(st.E2E.P99), st.PromptTokens, st.CachedTokens)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.Reset()
	b.WriteString("latencies in ms; out tok/s counts generated tokens (usage where the stream bears it out)\n")
	for _, st := range rep.Steps {
		var notes []string
		if st.UsageMismatches > 0 {
			notes = append(notes, fmt.Sprintf("%d of %d requests: stream count ≠ usage (%d tokens streamed, %d in usage)",
				st.UsageMismatches, st.OK, st.StreamTokens, st.UsageOutputTokens))
		}
		if st.Short > 0 {
			why := "an end of generation or a stop"
			if rep.Workload.IgnoreEOS {
				why = "the server did not honor ignore_eos"
			}
			notes = append(notes, fmt.Sprintf("%d requests generated fewer tokens than asked (%s)", st.Short, why))
		}
		if st.UsageMissing > 0 {
			notes = append(notes, fmt.Sprintf("%d requests without usage", st.UsageMissing))
		}
		if st.WarmupErrors > 0 {
			notes = append(notes, fmt.Sprintf("%d warm-up requests failed", st.WarmupErrors))
		}
		for _, k := range slices.Sorted(maps.Keys(st.Errors)) {
			notes = append(notes, fmt.Sprintf("error %q ×%d", k, st.Errors[k]))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", StepName(st), strings.Join(notes, "; "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sloText(s SLO) string {
	var b strings.Builder
	if s.TTFTMs > 0 {
		fmt.Fprintf(&b, " TTFT ≤ %g ms", s.TTFTMs)
	}
	if s.ITLMs > 0 {
		fmt.Fprintf(&b, " mean ITL ≤ %g ms", s.ITLMs)
	}
	if s.E2EMs > 0 {
		fmt.Fprintf(&b, " E2E ≤ %g ms", s.E2EMs)
	}
	return b.String()
}

func msText(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
