package catalog

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// plainLineEvery is how often plain progress prints a line when no 10% step
// was crossed.
const plainLineEvery = 10 * time.Second

// progress reports one transfer (or hash) to a writer: a progress bar when the
// writer is a terminal, plain lines otherwise. A nil *progress reports
// nothing. It is used by one goroutine at a time.
type progress struct {
	w     io.Writer
	term  bool
	label string
	verb  string
	now   func() time.Time
	// onBytes, when set, hears (done, total) of download passes.
	onBytes func(done, total int64)

	bar *progressbar.ProgressBar

	// plain lines
	total, done   int64
	startDone     int64
	start, last   time.Time
	lastStep      int64 // last 10% step printed
	linesThisPass bool
}

// newProgress returns nil when w is nil.
func newProgress(w io.Writer, label string) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, label: label, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.term = true
	}
	return p
}

// printf writes one message line.
func (p *progress) printf(format string, args ...any) {
	if p == nil {
		return
	}
	fmt.Fprintf(p.w, p.label+": "+format+"\n", args...)
}

// begin starts a pass of total bytes (-1: unknown) of which have are already
// there.
func (p *progress) begin(verb string, total, have int64) {
	if p == nil {
		return
	}
	p.end(false)
	p.verb = verb
	p.total, p.done, p.startDone = total, have, have
	p.start = p.now()
	p.last = p.start
	p.lastStep = -1
	if total > 0 {
		p.lastStep = have * 10 / total
	}
	p.linesThisPass = false
	if p.onBytes != nil && verb == "download" {
		p.onBytes(have, total)
	}
	if !p.term {
		return
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(verb + " " + p.label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetSpinnerChangeInterval(0), // no render goroutine for unknown sizes
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	}
	p.bar = progressbar.NewOptions64(total, opts...)
	if have > 0 {
		_ = p.bar.Set64(have)
	}
}

// add records n more bytes.
func (p *progress) add(n int64) {
	if p == nil || n == 0 {
		return
	}
	p.done += n
	if p.onBytes != nil && p.verb == "download" {
		p.onBytes(p.done, p.total)
	}
	if p.bar != nil {
		_ = p.bar.Add64(n)
		return
	}
	if p.term {
		return
	}
	now := p.now()
	step := int64(-1)
	if p.total > 0 {
		step = p.done * 10 / p.total
	}
	if step > p.lastStep || now.Sub(p.last) >= plainLineEvery {
		p.lastStep = max(step, p.lastStep)
		p.last = now
		p.line(now)
	}
}

// end closes the pass; complete says whether it reached its end.
func (p *progress) end(complete bool) {
	if p == nil {
		return
	}
	if p.bar != nil {
		if complete && p.total > 0 {
			_ = p.bar.Finish() // prints the newline through OnCompletion
		} else {
			_ = p.bar.Exit()
		}
		p.bar = nil
		return
	}
	if !p.term && complete && !p.linesThisPass && p.done > p.startDone {
		p.line(p.now()) // say at least once that it finished
	}
}

func (p *progress) line(now time.Time) {
	p.linesThisPass = true
	rate := 0.0
	if el := now.Sub(p.start).Seconds(); el > 0 {
		rate = float64(p.done-p.startDone) / el
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "%s: %s %s, %s/s\n", p.label, p.verb, formatBytes(p.done), formatBytes(int64(rate)))
		return
	}
	s := fmt.Sprintf("%s: %s %3d%% %s / %s", p.label, p.verb, p.done*100/p.total, formatBytes(p.done), formatBytes(p.total))
	if rate > 0 {
		s += fmt.Sprintf(", %s/s", formatBytes(int64(rate)))
		if left := p.total - p.done; left > 0 {
			eta := time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
			s += ", ETA " + eta.String()
		}
	}
	fmt.Fprintln(p.w, s)
}

// formatBytes prints n in IEC units with one decimal.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
