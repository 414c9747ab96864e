package api

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"testing"
)

// AppendToken writes what encoding/json writes, and decodeTokenFast reads
// exactly what encoding/json reads (or leaves the data to it).
func FuzzTokenCodec(f *testing.F) {
	for _, s := range []string{"hello", " world", "", "<b>&", "\"q\"", "a\\b", "\n", "é", "\xff", "\u2028"} {
		f.Add(s, 3, int32(17))
	}
	f.Add("x", -1, int32(math.MinInt32))
	f.Add("x", math.MaxInt, int32(math.MaxInt32))
	f.Fuzz(func(t *testing.T, text string, i int, id int32) {
		tok := Token{T: text, I: i, ID: id}
		want, err := json.Marshal(&tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendToken(nil, &tok); string(got) != string(want) {
			t.Fatalf("AppendToken %s, encoding/json %s", got, want)
		}
		checkDecode(t, want)
		checkDecode(t, []byte(text)) // arbitrary bytes as data
		checkDecode(t, []byte(`{"t":"`+text+`","i":`+strconv.Itoa(i)+`,"id":`+strconv.Itoa(int(id))+`}`))
	})
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var want Token
	werr := json.Unmarshal(data, &want)
	got, gerr := DecodeEvent(EventToken, data)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%q: DecodeEvent err %v, encoding/json err %v", data, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(*got.Token, want) {
		t.Fatalf("%q: DecodeEvent %+v, encoding/json %+v", data, *got.Token, want)
	}
}

func TestTokenFastPath(t *testing.T) {
	var tok Token
	for _, c := range []struct {
		data string
		fast bool
	}{
		{`{"t":"hi","i":3,"id":100}`, true},
		{`{"t":"","i":0,"id":-5}`, true},
		{`{"t":"a\"b","i":3,"id":1}`, false},
		{`{"t":"hi","i":03,"id":1}`, false},
		{`{"t":"hi","i":3,"id":1,"lp":{}}`, false},
		{`{"t":"hi","i":3,"id":99999999999}`, false},
		{`{"i":3,"t":"hi","id":1}`, false},
	} {
		if got := decodeTokenFast([]byte(c.data), &tok); got != c.fast {
			t.Errorf("%s: fast %v, want %v", c.data, got, c.fast)
		}
	}
}

// AppendJSONString writes what encoding/json writes for a string.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", `"`, "<&>", "\xff", "\u2028", "é", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}
