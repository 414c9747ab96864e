package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The chart drawn by Plot: three panels side by side (output tokens/s, TTFT
// p50/p99, inter-token latency p50/p99), one colour per report, p50 solid
// with filled dots, p99 dashed with hollow dots, a legend below. One layout
// is computed and then drawn twice over: as hand-written SVG or on an
// paletted image encoded as PNG (text in x/image's 7x13 bitmap face, and the
// SVG in a monospace font so both measure text alike).
//
// Honesty rules: every y axis starts at 0; points sit at their x values; the
// x axis is linear from 0 unless the x values span a factor of 8 or more,
// then it is log2 and its label says so. A value that is NaN, infinite,
// negative or above plotMaxValue is not drawn (a line breaks there rather
// than joining its neighbours) and a footnote counts such points.

// plotMaxValue bounds what a chart draws: a y value or rate above it is left
// out and counted in the footnote (1e15 tokens/s or ms is no measurement).
const plotMaxValue = 1e15

// plotMaxLabel is the longest legend label, in runes; longer ones are cut
// and end in "...".
const plotMaxLabel = 48

var (
	errPlotNoReports = errors.New("bench: plot: no reports")
	errPlotNoSteps   = errors.New("bench: plot: the reports hold no steps")
	errPlotMixed     = errors.New("bench: plot: one chart takes one kind of step")
	errPlotFormat    = errors.New("bench: plot: unknown format (want svg or png)")
)

// PlotFormat returns the chart format for a file name from its extension:
// "svg" for .svg and "png" for .png (any case).
func PlotFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		return "svg", nil
	case ".png":
		return "png", nil
	}
	return "", fmt.Errorf("%w: %q: name a .svg or .png file", errPlotFormat, path)
}

// Plot draws reports on one chart in format "svg" or "png": output tokens/s,
// TTFT p50/p99 and inter-token latency p50/p99 against concurrency
// (closed-loop steps) or requests/s (open-loop steps), one colour and legend
// entry per report (Report.Label, or URL and model when it is empty).
//
// All steps of all reports must be of one kind: closed-loop (Concurrency
// set), open-loop (Rate set), or trace replays (neither), which are drawn
// against their step number within the report; mixing kinds, or a step that
// sets both, is an error, as are zero reports or no steps at all. A point
// whose value is NaN, infinite, negative or above 1e15 is not drawn and the
// chart's footnote counts it; a non-positive concurrency or rate leaves its
// step out the same way. Colours repeat after 20 reports; labels longer
// than 48 characters are cut.
func Plot(w io.Writer, format string, reports []Report) error {
	if format != "svg" && format != "png" {
		return fmt.Errorf("%w: %q", errPlotFormat, format)
	}
	c, err := newChart(reports)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if format == "svg" {
		s := &svgCanvas{w: c.width, h: c.height}
		c.draw(s)
		s.writeTo(&buf)
	} else {
		p := newPNGCanvas(c.width, c.height)
		c.draw(p)
		if err := png.Encode(&buf, p.img); err != nil {
			return fmt.Errorf("bench: plot: encode png: %w", err)
		}
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// chartXKind is what a chart's x axis measures.
type chartXKind int

const (
	chartXConcurrency chartXKind = iota + 1
	chartXRate
	chartXIndex
)

func (k chartXKind) String() string {
	switch k {
	case chartXConcurrency:
		return "closed-loop (concurrency)"
	case chartXRate:
		return "open-loop (rate)"
	}
	return "trace replay (neither concurrency nor rate)"
}

// stepXKind says which kind a step is.
func stepXKind(s Step) (chartXKind, error) {
	hasC, hasR := s.Concurrency != 0, s.Rate != 0 // NaN != 0: a (bad) rate
	switch {
	case hasC && hasR:
		return 0, errors.New("sets both concurrency and rate")
	case hasC:
		return chartXConcurrency, nil
	case hasR:
		return chartXRate, nil
	}
	return chartXIndex, nil
}

// chartMetric is one line of a panel: a value of a step.
type chartMetric struct {
	name   string // "ttft-p50": the SVG path's data-series
	dashed bool   // p99
	get    func(Step) float64
}

// chartPanels are the three panels, left to right.
var chartPanels = []struct {
	title   string
	metrics []chartMetric
}{
	{"Output throughput (tokens/s)", []chartMetric{
		{"output-tokens-per-s", false, func(s Step) float64 { return s.OutputTokPerS }},
	}},
	{"Time to first token p50, p99 (ms)", []chartMetric{
		{"ttft-p50", false, func(s Step) float64 { return s.TTFT.P50 }},
		{"ttft-p99", true, func(s Step) float64 { return s.TTFT.P99 }},
	}},
	{"Inter-token latency p50, p99 (ms)", []chartMetric{
		{"itl-p50", false, func(s Step) float64 { return s.ITL.P50 }},
		{"itl-p99", true, func(s Step) float64 { return s.ITL.P99 }},
	}},
}

// chartPoint is a point in data coordinates.
type chartPoint struct{ x, y float64 }

// chartSeries is one metric of one report: runs of drawable points, split
// where a value could not be drawn.
type chartSeries struct {
	report int
	metric chartMetric
	segs   [][]chartPoint
}

// chartAxis maps data values to pixels between lo and hi.
type chartAxis struct {
	min, max float64
	log2     bool
	ticks    []float64
	labels   []string
}

func (a chartAxis) at(v, lo, hi float64) float64 {
	f := 0.0
	if a.log2 {
		f = (math.Log2(v) - math.Log2(a.min)) / (math.Log2(a.max) - math.Log2(a.min))
	} else {
		f = (v - a.min) / (a.max - a.min)
	}
	return lo + f*(hi-lo)
}

// Layout, in pixels.
const (
	chartWidth      = 1280
	chartMargin     = 16
	chartGap        = 24
	chartPanelW     = (chartWidth - 2*chartMargin - 2*chartGap) / 3
	chartYLabelW    = 56 // room for y tick labels left of a plot area
	chartPlotTop    = 80
	chartPlotH      = 260
	chartLegendTop  = chartPlotTop + chartPlotH + 64
	chartLegendCols = 3
	chartLegendRowH = 18
	chartCharW      = 7 // basicfont.Face7x13's advance; the SVG's monospace 12px is close
)

// chartHeight is the chart's height for n reports (the legend grows).
func chartHeight(n int) int {
	rows := (n + chartLegendCols - 1) / chartLegendCols
	return chartLegendTop + rows*chartLegendRowH + 24
}

type chart struct {
	width, height int
	title         string
	x             chartAxis
	xLabel        string
	ys            []chartAxis // one per panel
	series        [][]chartSeries
	labels        []string
	skipped       int
}

func newChart(reports []Report) (*chart, error) {
	if len(reports) == 0 {
		return nil, errPlotNoReports
	}
	kind, steps := chartXKind(0), 0
	for i, r := range reports {
		for j, s := range r.Steps {
			k, err := stepXKind(s)
			if err != nil {
				return nil, fmt.Errorf("bench: plot: report %d (%s) step %d %w", i+1, strconv.Quote(plotLabel(r, i)), j+1, err)
			}
			if kind != 0 && k != kind {
				return nil, fmt.Errorf("%w: report %d (%s) step %d is %s, an earlier step %s", errPlotMixed, i+1, strconv.Quote(plotLabel(r, i)), j+1, k, kind)
			}
			kind = k
			steps++
		}
	}
	if steps == 0 {
		return nil, errPlotNoSteps
	}
	c := &chart{width: chartWidth, height: chartHeight(len(reports))}
	switch kind {
	case chartXConcurrency:
		c.title = "Throughput and latency against concurrency (closed loop)"
		c.xLabel = "concurrency (streams)"
	case chartXRate:
		c.title = "Throughput and latency against request rate (open loop, Poisson arrivals)"
		c.xLabel = "rate (requests/s)"
	default:
		c.title = "Throughput and latency per trace replay step"
		c.xLabel = "step of the replay (no concurrency or rate)"
	}

	// x values; a step whose x cannot be drawn is left out of every series.
	type xstep struct {
		x    float64
		step Step
	}
	xs := make([][]xstep, len(reports))
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for i, r := range reports {
		for j, s := range r.Steps {
			x := float64(j + 1)
			switch kind {
			case chartXConcurrency:
				x = float64(s.Concurrency)
			case chartXRate:
				x = s.Rate
			}
			if !plotDrawable(x) || x == 0 {
				c.skipped += plotMetricCount()
				continue
			}
			xs[i] = append(xs[i], xstep{x, s})
			xmin, xmax = min(xmin, x), max(xmax, x)
		}
		slices.SortStableFunc(xs[i], func(a, b xstep) int {
			switch {
			case a.x < b.x:
				return -1
			case a.x > b.x:
				return 1
			}
			return 0
		})
	}
	c.x = plotXAxis(kind, xmin, xmax)
	if c.x.log2 {
		c.xLabel = strings.TrimSuffix(c.xLabel, ")") + ", log2 scale)"
	}

	for _, p := range chartPanels {
		var row []chartSeries
		top := 0.0
		for i := range reports {
			for _, m := range p.metrics {
				s := chartSeries{report: i, metric: m}
				var seg []chartPoint
				for _, xs := range xs[i] {
					y := m.get(xs.step)
					if !plotDrawable(y) {
						c.skipped++
						if len(seg) > 0 {
							s.segs = append(s.segs, seg)
						}
						seg = nil
						continue
					}
					seg = append(seg, chartPoint{xs.x, y})
					top = max(top, y)
				}
				if len(seg) > 0 {
					s.segs = append(s.segs, seg)
				}
				row = append(row, s)
			}
		}
		c.series = append(c.series, row)
		c.ys = append(c.ys, plotYAxis(top))
	}
	for i, r := range reports {
		c.labels = append(c.labels, plotTruncate(plotLabel(r, i)))
	}
	return c, nil
}

// plotMetricCount is how many values a step gives a chart.
func plotMetricCount() int {
	n := 0
	for _, p := range chartPanels {
		n += len(p.metrics)
	}
	return n
}

// plotDrawable reports whether v can be drawn: finite, >= 0, <= plotMaxValue.
func plotDrawable(v float64) bool {
	return v >= 0 && v <= plotMaxValue // false for NaN and ±Inf
}

// plotLabel names report i: its Label, or its URL and model, or its number.
func plotLabel(r Report, i int) string {
	l := strings.TrimSpace(r.Label)
	if l == "" {
		l = strings.TrimSpace(r.URL + " " + r.Model)
	}
	if l == "" {
		l = "report " + strconv.Itoa(i+1)
	}
	return l
}

// plotTruncate makes a label printable on one line (control characters and
// invalid UTF-8 become spaces and U+FFFD) and at most plotMaxLabel runes.
func plotTruncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= plotMaxLabel {
		return s
	}
	r := []rune(s)
	return string(r[:plotMaxLabel-3]) + "..."
}

// plotXAxis is linear from 0 with 1-2-5 ticks (whole numbers for
// concurrency and step numbers), or log2 with power-of-two ticks when the
// values span a factor of 8 or more.
func plotXAxis(kind chartXKind, lo, hi float64) chartAxis {
	if math.IsInf(lo, 1) { // nothing drawable
		lo, hi = 1, 1
	}
	if kind != chartXIndex && lo > 0 && hi/lo >= 8 {
		a := chartAxis{log2: true}
		klo, khi := math.Floor(math.Log2(lo)), math.Ceil(math.Log2(hi))
		a.min, a.max = math.Exp2(klo), math.Exp2(khi)
		stride := math.Ceil((khi - klo + 1) / 9)
		for k := klo; k <= khi; k += stride {
			v := math.Exp2(k)
			a.ticks = append(a.ticks, v)
			a.labels = append(a.labels, plotCompact(v))
		}
		return a
	}
	minStep := 0.0
	if kind != chartXRate {
		minStep = 1
	}
	return plotLinear(hi, minStep)
}

// plotYAxis runs from 0 to a nice number at or above top.
func plotYAxis(top float64) chartAxis { return plotLinear(top, 0) }

// plotLinear is an axis from 0 to the first multiple of a 1-2-5 step at or
// above top, with about five ticks.
func plotLinear(top, minStep float64) chartAxis {
	if !(top >= 1e-12) { // 0, NaN, or too small for the tick arithmetic
		top = 1
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw*(1-1e-9) {
			step = m * mag
			break
		}
	}
	step = max(step, minStep)
	n := math.Ceil(top/step - 1e-9)
	a := chartAxis{min: 0, max: n * step}
	unit, suffix := plotUnit(a.max)
	decimals := max(0, int(-math.Floor(math.Log10(step/unit)+1e-9)))
	for i := 0.0; i <= n; i++ {
		v := i * step
		a.ticks = append(a.ticks, v)
		switch {
		case v == 0:
			a.labels = append(a.labels, "0")
		case decimals > 4:
			a.labels = append(a.labels, strconv.FormatFloat(v/unit, 'g', 2, 64)+suffix)
		default:
			a.labels = append(a.labels, strconv.FormatFloat(v/unit, 'f', decimals, 64)+suffix)
		}
	}
	return a
}

// plotUnit picks the tick labels' unit for values up to top: 12k, 1.5M.
func plotUnit(top float64) (float64, string) {
	switch {
	case top >= 1e12:
		return 1e12, "T"
	case top >= 1e9:
		return 1e9, "G"
	case top >= 1e6:
		return 1e6, "M"
	case top >= 1e4:
		return 1e3, "k"
	}
	return 1, ""
}

// plotCompact labels one power of two: 0.5, 64, 16.4k.
func plotCompact(v float64) string {
	if v < 1.0/1024 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	unit, suffix := plotUnit(v)
	s := strconv.FormatFloat(v/unit, 'f', -1, 64)
	if unit > 1 {
		s = strconv.FormatFloat(v/unit, 'f', 1, 64)
		s = strings.TrimSuffix(s, ".0")
	}
	return s + suffix
}

// Colours: ten distinct hues, then the same ten darker; after 20 they repeat.
var chartPalette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff},
	{0xd6, 0x27, 0x28, 0xff}, {0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff},
	{0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff}, {0xbc, 0xbd, 0x22, 0xff},
	{0x17, 0xbe, 0xcf, 0xff},
}

func chartColor(i int) color.RGBA {
	c := chartPalette[i%len(chartPalette)]
	if (i/len(chartPalette))%2 == 1 {
		c.R, c.G, c.B = uint8(int(c.R)*3/5), uint8(int(c.G)*3/5), uint8(int(c.B)*3/5)
	}
	return c
}

var (
	chartWhite = color.RGBA{0xff, 0xff, 0xff, 0xff}
	chartInk   = color.RGBA{0x22, 0x22, 0x22, 0xff} // text and axes
	chartFaint = color.RGBA{0x66, 0x66, 0x66, 0xff} // notes
	chartGrid  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

type chartAnchor int

const (
	anchorStart chartAnchor = iota
	anchorMiddle
	anchorEnd
)

// chartCanvas is what a chart is drawn on. Coordinates are pixels from the
// top left; text is placed by its baseline.
type chartCanvas interface {
	line(x0, y0, x1, y1 float64, c color.RGBA, dashed bool)
	text(x, y float64, s string, a chartAnchor, c color.RGBA, bold bool)
	// series draws one report's metric: a line through each run of points
	// and a dot (hollow when dashed) at every point.
	series(segs [][]chartPoint, c color.RGBA, dashed bool, report int, name string)
}

func (c *chart) draw(cv chartCanvas) {
	cv.text(float64(c.width)/2, 24, c.title, anchorMiddle, chartInk, true)
	cv.text(float64(c.width)/2, 44, "p50: solid line, filled dot | p99: dashed line, hollow dot | every y axis starts at 0",
		anchorMiddle, chartFaint, false)
	for p, panel := range chartPanels {
		left := float64(chartMargin + p*(chartPanelW+chartGap) + chartYLabelW)
		right := float64(chartMargin + p*(chartPanelW+chartGap) + chartPanelW - 8)
		top, bottom := float64(chartPlotTop), float64(chartPlotTop+chartPlotH)
		cv.text((left+right)/2, top-10, panel.title, anchorMiddle, chartInk, true)
		y := c.ys[p]
		for i, v := range y.ticks {
			py := math.Round(y.at(v, bottom, top))
			if v != 0 {
				cv.line(left, py, right, py, chartGrid, false)
			}
			cv.text(left-6, py+4, y.labels[i], anchorEnd, chartInk, false)
		}
		for i, v := range c.x.ticks {
			px := math.Round(c.x.at(v, left, right))
			cv.line(px, bottom, px, bottom+4, chartInk, false)
			cv.text(px, bottom+17, c.x.labels[i], anchorMiddle, chartInk, false)
		}
		cv.line(left, bottom, right, bottom, chartInk, false)
		cv.line(left, top, left, bottom, chartInk, false)
		cv.text((left+right)/2, bottom+35, c.xLabel, anchorMiddle, chartInk, false)
		for _, s := range c.series[p] {
			px := make([][]chartPoint, len(s.segs))
			for i, seg := range s.segs {
				for _, pt := range seg {
					px[i] = append(px[i], chartPoint{c.x.at(pt.x, left, right), y.at(pt.y, bottom, top)})
				}
			}
			cv.series(px, chartColor(s.report), s.metric.dashed, s.report, s.metric.name)
		}
	}
	colW := float64(c.width-2*chartMargin) / chartLegendCols
	for i, l := range c.labels {
		x := chartMargin + float64(i%chartLegendCols)*colW
		y := float64(chartLegendTop + (i/chartLegendCols)*chartLegendRowH)
		cv.line(x, y-4, x+24, y-4, chartColor(i), false)
		cv.line(x, y-3, x+24, y-3, chartColor(i), false)
		cv.text(x+30, y, l, anchorStart, chartInk, false)
	}
	if c.skipped > 0 {
		cv.text(chartMargin, float64(c.height-8),
			fmt.Sprintf("%d values not drawn: NaN, infinite, negative, above 1e15, or at a concurrency or rate that is not positive", c.skipped),
			anchorStart, chartFaint, false)
	}
}

// svgCanvas writes SVG by hand; every text and attribute value goes through
// xml.EscapeText.
type svgCanvas struct {
	w, h int
	body bytes.Buffer
}

var _ chartCanvas = (*svgCanvas)(nil)

func svgNum(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

func svgColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func svgEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writes to a bytes.Buffer never fail
	return b.String()
}

func (s *svgCanvas) line(x0, y0, x1, y1 float64, c color.RGBA, dashed bool) {
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	fmt.Fprintf(&s.body, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\"%s/>\n",
		svgNum(x0+0.5), svgNum(y0+0.5), svgNum(x1+0.5), svgNum(y1+0.5), svgColor(c), dash)
}

func (s *svgCanvas) text(x, y float64, t string, a chartAnchor, c color.RGBA, bold bool) {
	attrs := ""
	switch a {
	case anchorMiddle:
		attrs = ` text-anchor="middle"`
	case anchorEnd:
		attrs = ` text-anchor="end"`
	}
	if bold {
		attrs += ` font-weight="bold"`
	}
	fmt.Fprintf(&s.body, "<text x=\"%s\" y=\"%s\" fill=\"%s\"%s>%s</text>\n", svgNum(x), svgNum(y), svgColor(c), attrs, svgEscape(t))
}

func (s *svgCanvas) series(segs [][]chartPoint, c color.RGBA, dashed bool, report int, name string) {
	var d strings.Builder
	for _, seg := range segs {
		for i, p := range seg {
			if i == 0 {
				d.WriteString("M")
			} else {
				d.WriteString(" L")
			}
			d.WriteString(svgNum(p.x) + " " + svgNum(p.y))
		}
	}
	col := svgColor(c)
	dash, dot := "", col
	if dashed {
		dash, dot = ` stroke-dasharray="6 4"`, "#ffffff"
	}
	fmt.Fprintf(&s.body, "<g class=\"series\" data-report=\"%d\" data-series=\"%s\">\n", report, svgEscape(name))
	fmt.Fprintf(&s.body, "<path class=\"line\" d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", d.String(), col, dash)
	for _, seg := range segs {
		for _, p := range seg {
			fmt.Fprintf(&s.body, "<circle cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", svgNum(p.x), svgNum(p.y), dot, col)
		}
	}
	s.body.WriteString("</g>\n")
}

func (s *svgCanvas) writeTo(w *bytes.Buffer) {
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"monospace\" font-size=\"12\">\n", s.w, s.h, s.w, s.h)
	fmt.Fprintf(w, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", s.w, s.h)
	w.Write(s.body.Bytes())
	w.WriteString("</svg>\n")
}

// pngCanvas draws on a paletted image (the chart has few colours: the file
// is small and quick to encode): Bresenham lines two pixels wide, dashes
// counted along the line, text in basicfont's 7x13 face.
type pngCanvas struct {
	img   *image.Paletted
	index map[color.RGBA]uint8
}

var _ chartCanvas = (*pngCanvas)(nil)

func newPNGCanvas(w, h int) *pngCanvas {
	pal := color.Palette{chartWhite, chartInk, chartFaint, chartGrid}
	for i := range 2 * len(chartPalette) {
		pal = append(pal, chartColor(i))
	}
	p := &pngCanvas{img: image.NewPaletted(image.Rect(0, 0, w, h), pal), index: map[color.RGBA]uint8{}}
	for i, c := range pal {
		p.index[c.(color.RGBA)] = uint8(i)
	}
	return p // index 0, white, everywhere
}

// set colours one pixel; outside the image it does nothing.
func (p *pngCanvas) set(x, y int, c color.RGBA) {
	p.img.SetColorIndex(x, y, p.index[c])
}

// Dash pattern in pixels along a line.
const (
	pngDashOn  = 7
	pngDashOff = 5
)

// stroke draws a Bresenham line, each pixel as a width x width square,
// skipping the off part of the dash pattern when dashed; *phase carries the
// pattern from one segment to the next.
func (p *pngCanvas) stroke(x0, y0, x1, y1 int, c color.RGBA, width int, dashed bool, phase *int) {
	dx, dy := plotAbs(x1-x0), -plotAbs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		if !dashed || *phase%(pngDashOn+pngDashOff) < pngDashOn {
			for i := range width {
				for j := range width {
					p.set(x0+i, y0+j, c)
				}
			}
		}
		*phase++
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func plotAbs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func (p *pngCanvas) line(x0, y0, x1, y1 float64, c color.RGBA, dashed bool) {
	phase := 0
	p.stroke(int(math.Round(x0)), int(math.Round(y0)), int(math.Round(x1)), int(math.Round(y1)), c, 1, dashed, &phase)
}

func (p *pngCanvas) text(x, y float64, s string, a chartAnchor, c color.RGBA, bold bool) {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?' // the face draws ASCII; the SVG keeps the real text
		}
		return r
	}, s)
	w := font.MeasureString(basicfont.Face7x13, s).Round()
	switch a {
	case anchorMiddle:
		x -= float64(w) / 2
	case anchorEnd:
		x -= float64(w)
	}
	d := font.Drawer{Dst: p.img, Src: image.NewUniform(c), Face: basicfont.Face7x13}
	d.Dot = fixed.P(int(math.Round(x)), int(math.Round(y)))
	d.DrawString(s)
	if bold {
		d.Dot = fixed.P(int(math.Round(x))+1, int(math.Round(y)))
		d.DrawString(s)
	}
}

func (p *pngCanvas) series(segs [][]chartPoint, c color.RGBA, dashed bool, _ int, _ string) {
	phase := 0
	for _, seg := range segs {
		for i := 1; i < len(seg); i++ {
			a, b := seg[i-1], seg[i]
			p.stroke(int(math.Round(a.x)), int(math.Round(a.y)), int(math.Round(b.x)), int(math.Round(b.y)), c, 2, dashed, &phase)
		}
	}
	for _, seg := range segs {
		for _, pt := range seg {
			p.dot(int(math.Round(pt.x)), int(math.Round(pt.y)), c, dashed)
		}
	}
}

// dot draws a disc of radius 3, hollow (white inside) when hollow.
func (p *pngCanvas) dot(cx, cy int, c color.RGBA, hollow bool) {
	for dy := -3; dy <= 3; dy++ {
		for dx := -3; dx <= 3; dx++ {
			d := dx*dx + dy*dy
			switch {
			case d > 10:
			case hollow && d <= 3:
				p.set(cx+dx, cy+dy, chartWhite)
			default:
				p.set(cx+dx, cy+dy, c)
			}
		}
	}
}
