package gguf

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestF16RoundTripAll(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := F16ToF32(h)
		if f != f { // NaN
			if got := F32ToF16(f); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x, not NaN", h, got)
			}
			continue
		}
		if got := F32ToF16(f); got != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)=%g) = %#04x", h, f, got)
		}
	}
}

// nearestF16 finds the correctly rounded half for f by searching all finite
// halves of the same sign (reference implementation).
func nearestF16(f float32) uint16 {
	x := float64(f)
	sign := uint16(0)
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	// Values at or above the largest half (65504) plus half its ulp round to Inf.
	if x >= 65520 {
		return sign | 0x7c00
	}
	best, bestD := uint16(0), math.Inf(1)
	for h := uint16(0); h < 0x7c00; h++ {
		d := math.Abs(float64(F16ToF32(h)) - x)
		if d < bestD || (d == bestD && h&1 == 0) {
			best, bestD = h, d
		}
	}
	return sign | best
}

func TestF32ToF16Rounding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []float32{0, 1, -1, 65504, 65519, 65520, 1e-8, 2.9802322e-08, 2.9802326e-08, 5.9604645e-08, 6.1035156e-05, 6.1e-05, 0.1, 0.33333334, -0.05}
	for range 300 {
		// Random magnitudes across the half range and around it.
		cases = append(cases, float32(math.Ldexp(r.Float64()*2-1, r.IntN(40)-28)))
	}
	for _, f := range cases {
		if got, want := F32ToF16(f), nearestF16(f); got != want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", f, got, want)
		}
	}
	if got := F32ToF16(float32(math.Inf(-1))); got != 0xfc00 {
		t.Errorf("F32ToF16(-Inf) = %#04x", got)
	}
}

func TestPutF16s(t *testing.T) {
	dst := make([]byte, 4)
	PutF16s(dst, []float32{1, -2})
	if want := []byte{0x00, 0x3c, 0x00, 0xc0}; string(dst) != string(want) {
		t.Errorf("PutF16s = % x, want % x", dst, want)
	}
	PutF16s(nil, nil)
}
