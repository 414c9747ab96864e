package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/testkit"
)

// The golden SVG is rewritten with -update. The flag is shared with the
// package's other golden tests when one of them declares it first (as a
// package-level var, which initializes before this init runs).
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata")
	}
}

func plotUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// plotStep is a valid closed-loop step at concurrency k whose figures grow
// with k and with scale.
func plotStep(k int, scale float64) Step {
	fk := float64(k)
	return Step{
		Concurrency:   k,
		Requests:      32,
		OK:            32,
		DurationS:     10,
		OutputTokens:  4096,
		OutputTokPerS: scale * 40 * fk / (1 + fk/16),
		ReqPerS:       scale * fk / 3,
		TTFT:          Dist{N: 32, P50: 80 * fk / scale, P99: 140 * fk / scale},
		ITL:           Dist{N: 32 * 127, P50: 20 + 2*fk/scale, P99: 35 + 4*fk/scale},
	}
}

// plotReports is two closed-loop reports at K = 1, 4, 8: the fixed input of
// the golden file.
func plotReports() []Report {
	a := Report{Label: "llorch worker", URL: "http://127.0.0.1:8001", Model: "qwen05-q4_0"}
	b := Report{URL: "http://127.0.0.1:8080", Model: "qwen05-q4_0"} // no label: URL + model
	for _, k := range []int{1, 4, 8} {
		a.Steps = append(a.Steps, plotStep(k, 1.2))
		b.Steps = append(b.Steps, plotStep(k, 1))
	}
	return []Report{a, b}
}

func plotString(t *testing.T, format string, reports []Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Plot(&buf, format, reports); err != nil {
		t.Fatalf("Plot %s: %v", format, err)
	}
	if buf.Len() == 0 {
		t.Fatalf("Plot %s wrote nothing", format)
	}
	return buf.Bytes()
}

// svgDoc is what the tests read back from an SVG: the lines per report and
// series, and every text.
type svgDoc struct {
	width, height int
	paths         map[string]int // "report/series" -> <path class="line"> count
	dots          map[string]int // "report/series" -> <circle> count
	pathD         map[string]string
	texts         []string
	attrs         []string // every attribute value
}

// parseSVG decodes b with encoding/xml, failing the test on any error.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	doc := svgDoc{paths: map[string]int{}, dots: map[string]int{}, pathD: map[string]string{}}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var group string
	var inText bool
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range tok.Attr {
				attr[a.Name.Local] = a.Value
				doc.attrs = append(doc.attrs, a.Value)
			}
			switch tok.Name.Local {
			case "svg":
				doc.width, _ = strconv.Atoi(attr["width"])
				doc.height, _ = strconv.Atoi(attr["height"])
			case "g":
				if attr["class"] == "series" {
					group = attr["data-report"] + "/" + attr["data-series"]
				}
			case "path":
				if attr["class"] == "line" {
					doc.paths[group]++
					doc.pathD[group] = attr["d"]
				}
			case "circle":
				doc.dots[group]++
			case "text":
				inText = true
				text.Reset()
			}
		case xml.CharData:
			if inText {
				text.Write(tok)
			}
		case xml.EndElement:
			switch tok.Name.Local {
			case "text":
				doc.texts = append(doc.texts, text.String())
				inText = false
			case "g":
				group = ""
			}
		}
	}
	return doc
}

var plotSeriesNames = []string{"output-tokens-per-s", "ttft-p50", "ttft-p99", "itl-p50", "itl-p99"}

func TestPlotSVGLinesAndLegend(t *testing.T) {
	reports := plotReports()
	reports[0].Label = `<script>alert("x")</script> & 'quoted'`
	b := plotString(t, "svg", reports)
	doc := parseSVG(t, b)
	if doc.width != chartWidth || doc.height != chartHeight(2) {
		t.Errorf("size %dx%d, want %dx%d", doc.width, doc.height, chartWidth, chartHeight(2))
	}
	for r := range reports {
		for _, s := range plotSeriesNames {
			key := fmt.Sprintf("%d/%s", r, s)
			if doc.paths[key] != 1 {
				t.Errorf("%s: %d lines, want 1", key, doc.paths[key])
			}
			if doc.dots[key] != 3 {
				t.Errorf("%s: %d dots, want 3 (one per step)", key, doc.dots[key])
			}
			if d := doc.pathD[key]; strings.Count(d, "M") != 1 || strings.Count(d, "L") != 2 {
				t.Errorf("%s: path %q, want one run through 3 points", key, d)
			}
		}
	}
	if len(doc.paths) != 2*len(plotSeriesNames) {
		t.Errorf("%d series drawn, want %d: %v", len(doc.paths), 2*len(plotSeriesNames), doc.paths)
	}
	if bytes.Contains(b, []byte("<script")) || bytes.Contains(b, []byte(`"x"`)) {
		t.Errorf("label not escaped:\n%s", b)
	}
	for _, want := range []string{reports[0].Label, "http://127.0.0.1:8080 qwen05-q4_0"} {
		found := false
		for _, txt := range doc.texts {
			found = found || txt == want
		}
		if !found {
			t.Errorf("legend lacks %q; texts: %q", want, doc.texts)
		}
	}
	for _, want := range []string{"Output throughput (tokens/s)", "Time to first token p50, p99 (ms)",
		"Inter-token latency p50, p99 (ms)", "concurrency (streams, log2 scale)"} {
		found := false
		for _, txt := range doc.texts {
			found = found || txt == want
		}
		if !found {
			t.Errorf("no text %q in %q", want, doc.texts)
		}
	}
}

// TestPlotPoints checks the geometry: points at their x values (log2 for
// 1..8), y from 0 at the bottom of the plot area.
func TestPlotPoints(t *testing.T) {
	c, err := newChart(plotReports())
	if err != nil {
		t.Fatal(err)
	}
	if !c.x.log2 || c.x.min != 1 || c.x.max != 8 {
		t.Fatalf("x axis %+v, want log2 1..8", c.x)
	}
	lo, hi := 100.0, 400.0
	for i, want := range []float64{100, 200, 300, 400} { // 1, 2, 4, 8 equally apart on log2
		if got := c.x.at(math.Exp2(float64(i)), lo, hi); math.Abs(got-want) > 1e-9 {
			t.Errorf("x(%g) = %g, want %g", math.Exp2(float64(i)), got, want)
		}
	}
	for p, y := range c.ys {
		if y.min != 0 || y.ticks[0] != 0 {
			t.Errorf("panel %d: y axis starts at %g", p, y.min)
		}
		if got := y.at(0, 300, 40); got != 300 {
			t.Errorf("panel %d: y(0) = %g, want the bottom 300", p, got)
		}
	}
	// A linear axis when x spans less than a factor of 8: from 0, points at their values.
	r := plotReports()[:1]
	r[0].Steps = []Step{plotStep(2, 1), plotStep(3, 1), plotStep(6, 1)}
	c, err = newChart(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.x.log2 || c.x.min != 0 || c.x.max != 6 {
		t.Fatalf("x axis %+v, want linear 0..6", c.x)
	}
	if got := c.x.at(3, 0, 600); got != 300 {
		t.Errorf("x(3) on 0..6 over 600px = %g, want 300", got)
	}
}

func TestPlotPNG(t *testing.T) {
	for _, n := range []int{1, 2, 10} {
		t.Run(strconv.Itoa(n)+" reports", func(t *testing.T) {
			var reports []Report
			for i := range n {
				r := plotReports()[i%2]
				r.Label = fmt.Sprintf("run %d", i)
				for j := range r.Steps {
					r.Steps[j].OutputTokPerS *= 1 + float64(i)/10
				}
				reports = append(reports, r)
			}
			img, err := png.Decode(bytes.NewReader(plotString(t, "png", reports)))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != chartWidth || b.Dy() != chartHeight(n) {
				t.Fatalf("size %v, want %dx%d", b, chartWidth, chartHeight(n))
			}
			counts := plotColorCounts(img)
			for i := range n {
				// The legend swatch alone is 2x25 pixels: ask for more, so
				// the report's lines and dots were drawn too.
				if c := chartColor(i); counts[c] < 200 {
					t.Errorf("report %d: %d pixels of %v, want lines drawn", i, counts[c], c)
				}
			}
			if counts[chartInk] < 1000 {
				t.Errorf("%d text/axis pixels: no text drawn?", counts[chartInk])
			}
		})
	}
}

func plotColorCounts(img image.Image) map[color.RGBA]int {
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	return counts
}

func TestPlotGolden(t *testing.T) {
	got := plotString(t, "svg", plotReports())
	path := filepath.Join("testdata", "plot_two_reports.svg")
	if plotUpdate() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if d := testkit.LineDiff(string(got), string(want)); d != "" {
		t.Errorf("%s differs (-got +want; -update rewrites it):\n%s", path, d)
	}
}

func TestPlotErrors(t *testing.T) {
	closed := plotReports()[0]
	open := closed
	open.Steps = []Step{{Rate: 2, OutputTokPerS: 10}}
	trace := closed
	trace.Steps = []Step{{OutputTokPerS: 10}}
	both := closed
	both.Steps = []Step{{Concurrency: 1, Rate: 2}}
	for _, tc := range []struct {
		name    string
		format  string
		reports []Report
		want    error
		wantMsg string
	}{
		{"no reports", "svg", nil, errPlotNoReports, ""},
		{"no steps", "png", []Report{{Label: "empty"}}, errPlotNoSteps, ""},
		{"bad format", "jpg", plotReports(), errPlotFormat, ""},
		{"closed and open", "svg", []Report{closed, open}, errPlotMixed, "open-loop (rate)"},
		{"open and trace", "svg", []Report{open, trace}, errPlotMixed, "trace replay"},
		{"both set", "svg", []Report{both}, nil, "sets both concurrency and rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Plot(&buf, tc.format, tc.reports)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q lacks %q", err, tc.wantMsg)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes on error", buf.Len())
			}
		})
	}
}

func TestPlotFormat(t *testing.T) {
	for in, want := range map[string]string{"out.svg": "svg", "/tmp/a.b/OUT.PNG": "png", "x.Svg": "svg"} {
		if got, err := PlotFormat(in); err != nil || got != want {
			t.Errorf("PlotFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"out.jpg", "out", "svg", "out.svg.gz", ""} {
		if got, err := PlotFormat(in); !errors.Is(err, errPlotFormat) {
			t.Errorf("PlotFormat(%q) = %q, %v; want an error", in, got, err)
		}
	}
}

// TestPlotTrace: steps with neither concurrency nor rate are drawn against
// their number in the report.
func TestPlotTrace(t *testing.T) {
	r := Report{Label: "replay", Steps: []Step{plotStep(1, 1), plotStep(2, 1)}}
	for i := range r.Steps {
		r.Steps[i].Concurrency = 0
	}
	c, err := newChart([]Report{r})
	if err != nil {
		t.Fatal(err)
	}
	if c.x.log2 || c.series[0][0].segs[0][1].x != 2 {
		t.Errorf("x axis %+v, points %+v; want linear, by step number", c.x, c.series[0][0].segs)
	}
	doc := parseSVG(t, plotString(t, "svg", []Report{r}))
	if !strings.Contains(strings.Join(doc.texts, "\n"), "step of the replay") {
		t.Errorf("x label: %q", doc.texts)
	}
}

// TestPlotTicks: 1-2-5 steps from 0, compact labels for big values.
func TestPlotTicks(t *testing.T) {
	for _, tc := range []struct {
		top  float64
		want string
	}{
		{0, "0 0.2 0.4 0.6 0.8 1.0"},
		{1234, "0 500 1000 1500"},
		{12000, "0 5k 10k 15k"},
		{1.4e6, "0 0.5M 1.0M 1.5M"},
		{87, "0 20 40 60 80 100"},
		{0.03, "0 0.01 0.02 0.03"},
		{1e15, "0 200T 400T 600T 800T 1000T"},
		{3e-9, "0 1e-09 2e-09 3e-09"},
	} {
		if got := strings.Join(plotYAxis(tc.top).labels, " "); got != tc.want {
			t.Errorf("ticks up to %g: %q, want %q", tc.top, got, tc.want)
		}
	}
	if got := strings.Join(plotXAxis(chartXConcurrency, 1, 64).labels, " "); got != "1 2 4 8 16 32 64" {
		t.Errorf("log2 ticks 1..64: %q", got)
	}
	if got := strings.Join(plotXAxis(chartXConcurrency, 1, 3).labels, " "); got != "0 1 2 3" {
		t.Errorf("concurrency ticks 1..3: %q (whole numbers)", got)
	}
	if got := strings.Join(plotXAxis(chartXRate, 0.5, 16).labels, " "); got != "0.5 1 2 4 8 16" {
		t.Errorf("rate ticks 0.5..16: %q", got)
	}
	if got := len(plotXAxis(chartXRate, 1e-6, 1e15).ticks); got > 10 {
		t.Errorf("%d ticks over 1e-6..1e15", got)
	}
}

// TestPlotHostile: bad values neither panic nor draw garbage; they are left
// out, counted in the footnote, and lines break at them.
func TestPlotHostile(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	long := strings.Repeat("a very long label ", 20)
	many := make([]Report, 20)
	for i := range many {
		many[i] = plotReports()[i%2]
		many[i].Label = fmt.Sprintf("run %02d", i)
	}
	bad := func(f func(*Step)) []Report {
		r := plotReports()
		f(&r[0].Steps[1])
		return r
	}
	for _, tc := range []struct {
		name    string
		reports []Report
		skipped int
	}{
		{"one step", []Report{{Label: "x", Steps: []Step{plotStep(4, 1)}}}, 0},
		{"zero values", []Report{{Label: "x", Steps: []Step{{Concurrency: 1}, {Concurrency: 2}}}}, 0},
		{"NaN", bad(func(s *Step) { s.TTFT.P99 = nan }), 1},
		{"Inf", bad(func(s *Step) { s.OutputTokPerS, s.ITL.P50 = inf, math.Inf(-1) }), 2},
		{"negative", bad(func(s *Step) { s.ITL.P99 = -5 }), 1},
		{"huge", bad(func(s *Step) { s.TTFT.P50 = 1e300 }), 1},
		{"big but drawable", bad(func(s *Step) { s.OutputTokPerS = 1.5e6 }), 0},
		{"negative concurrency", bad(func(s *Step) { s.Concurrency = -3 }), 5},
		{"NaN rate", []Report{{Steps: []Step{{Rate: nan}, {Rate: 1, OutputTokPerS: 5}}}}, 5},
		{"only bad x", []Report{{Steps: []Step{{Rate: -1}, {Rate: inf}}}}, 10},
		{"tiny rate", []Report{{Steps: []Step{{Rate: 1e-300, OutputTokPerS: 1}, {Rate: 1e15}}}}, 0},
		{"empty report beside", append(plotReports(), Report{}), 0},
		{"20 reports", many, 0},
		{"long label", []Report{{Label: long, Steps: []Step{plotStep(1, 1)}}}, 0},
		{"control characters and bad UTF-8", []Report{{Label: "a\x00b\x1b[31mc\xff\ufffe]]>", Steps: []Step{plotStep(1, 1)}}}, 0},
		{"no label", []Report{{Steps: []Step{plotStep(1, 1)}}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newChart(tc.reports)
			if err != nil {
				t.Fatal(err)
			}
			if c.skipped != tc.skipped {
				t.Errorf("%d values left out, want %d", c.skipped, tc.skipped)
			}
			for p, row := range c.series {
				for _, s := range row {
					for _, seg := range s.segs {
						for _, pt := range seg {
							if !plotDrawable(pt.y) || pt.y > c.ys[p].max || math.IsNaN(pt.x) || pt.x < c.x.min || pt.x > c.x.max {
								t.Errorf("panel %d: point %+v outside the axes %g..%g, 0..%g", p, pt, c.x.min, c.x.max, c.ys[p].max)
							}
						}
					}
				}
			}
			for _, l := range c.labels {
				if n := len([]rune(l)); n > plotMaxLabel {
					t.Errorf("label of %d runes: %q", n, l)
				}
			}
			svg := plotString(t, "svg", tc.reports)
			doc := parseSVG(t, svg)
			for _, a := range doc.attrs {
				if strings.Contains(a, "NaN") || strings.Contains(a, "Inf") {
					t.Errorf("SVG attribute %q", a)
				}
			}
			if len(doc.paths) != len(tc.reports)*len(plotSeriesNames) {
				t.Errorf("%d series, want %d", len(doc.paths), len(tc.reports)*len(plotSeriesNames))
			}
			if tc.skipped > 0 && !strings.Contains(strings.Join(doc.texts, "\n"), strconv.Itoa(tc.skipped)+" values not drawn") {
				t.Errorf("no footnote for %d values: %q", tc.skipped, doc.texts)
			}
			if _, err := png.Decode(bytes.NewReader(plotString(t, "png", tc.reports))); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A NaN in the middle breaks the line: two runs, not one joined over it.
	c, err := newChart(bad(func(s *Step) { s.TTFT.P99 = nan }))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.series[1] {
		if s.report == 0 && s.metric.name == "ttft-p99" && len(s.segs) != 2 {
			t.Errorf("ttft-p99 runs %+v, want two around the NaN", s.segs)
		}
	}
}

// FuzzPlot draws charts from arbitrary figures: no panic, and the SVG parses.
func FuzzPlot(f *testing.F) {
	f.Add(4, 2.0, 100.0, 50.0, 200.0, 20.0, 40.0, "label")
	f.Add(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "")
	f.Add(-1, math.NaN(), math.Inf(1), -1.0, 1e308, 5e-324, math.MaxFloat64, "<x>&\"'\x00\xff")
	f.Fuzz(func(t *testing.T, k int, rate, tps, t50, t99, i50, i99 float64, label string) {
		s := Step{Concurrency: k, Rate: rate, OutputTokPerS: tps,
			TTFT: Dist{P50: t50, P99: t99}, ITL: Dist{P50: i50, P99: i99}}
		s2 := s
		s2.Concurrency *= 2
		s2.Rate *= 2
		reports := []Report{{Label: label, Steps: []Step{s, s2}}, {Steps: []Step{s2}}}
		for _, format := range []string{"svg", "png"} {
			var buf bytes.Buffer
			err := Plot(&buf, format, reports)
			if err != nil {
				continue // a step with both concurrency and rate
			}
			if format == "svg" {
				parseSVG(t, buf.Bytes())
			} else if _, err := png.Decode(&buf); err != nil {
				t.Fatal(err)
			}
		}
	})
}
