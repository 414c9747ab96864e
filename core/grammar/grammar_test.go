package grammar

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema compiles a schema with the validator, formats asserted.
func compileSchema(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("validator refuses the schema: %v", err)
	}
	return s
}

// validate reports why s is not a JSON value that the schema allows.
func validate(s *jsonschema.Schema, text string) error {
	if !json.Valid([]byte(text)) {
		return errors.New("not valid JSON")
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// checkSamples generates n strings from grammar and checks each one matches
// the grammar again, is JSON and validates against schema.
func checkSamples(t testing.TB, schema, grammar string, n int, seed uint64) {
	t.Helper()
	g, err := parseGBNF(grammar)
	if err != nil {
		t.Fatalf("grammar does not parse: %v\n%s", err, grammar)
	}
	v := compileSchema(t, schema)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range n {
		s, err := g.generate(rng)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if err := validate(v, s); err != nil {
			t.Fatalf("sample %d does not validate: %v\nsample: %s\nschema: %s\ngrammar:\n%s", i, err, s, schema, grammar)
		}
		if len(s) < 2000 && !g.match(s) {
			t.Fatalf("sample %d is not matched by its own grammar: %s", i, s)
		}
	}
}

const person = `{
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "email": {"type": ["string", "null"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4},
    "address": {
      "type": "object",
      "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "zip": {"type": "string", "minLength": 5, "maxLength": 5}
      },
      "required": ["city"],
      "additionalProperties": false
    },
    "role": {"enum": ["admin", "user", "guest"]},
    "score": {"type": "number", "minimum": 0, "maximum": 1},
    "born": {"type": "string", "format": "date"}
  },
  "required": ["name", "age", "role"],
  "additionalProperties": false
}`

var tableCases = []struct {
	name   string
	schema string
	accept []string // must match the grammar
	reject []string // must not
}{
	{"empty schema is any JSON", `{}`,
		[]string{`1`, `"x"`, `{"a": [1, null, true]}`, `[]`, `-0.5e3`}, []string{`{"a":1 }`, `01`, `  1`, `{"a"  :1}`}},
	{"true is any JSON", `true`, []string{`null`, `[{}]`}, []string{`nul`}},
	{"string", `{"type":"string"}`,
		[]string{`""`, `"a\"b"`, `"\u00e9\n"`, `"日本"`}, []string{`"a`, `"\ud800"`, "\"\x01\"", `"\q"`}},
	{"string lengths", `{"type":"string","minLength":2,"maxLength":3}`,
		[]string{`"ab"`, `"a\nb"`, `"日本語"`}, []string{`"a"`, `"abcd"`}},
	{"integer", `{"type":"integer"}`,
		[]string{`0`, `-12`, `999999999999999`}, []string{`01`, `1.0`, `1e3`, `1000000000000000`, `-`}},
	{"integer range", `{"type":"integer","minimum":-15,"maximum":230}`,
		[]string{`-15`, `-1`, `0`, `99`, `230`, `199`}, []string{`-16`, `231`, `300`, `-20`}},
	{"integer exclusive", `{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}`,
		[]string{`1`, `9`}, []string{`0`, `10`}},
	{"integer large bounds", `{"type":"integer","minimum":1000,"maximum":123456789}`,
		[]string{`1000`, `123456789`, `99999999`}, []string{`999`, `123456790`}},
	{"number", `{"type":"number"}`,
		[]string{`1.5`, `-0.25e-3`, `10E+2`}, []string{`.5`, `1.`, `+1`, `1e100000`}},
	{"number range", `{"type":"number","minimum":-2.5,"maximum":3}`,
		[]string{`3`, `2.75`, `-2`, `-1.5`, `0`}, []string{`3.5`, `-3`, `1e1`}},
	{"number exclusive zero", `{"type":"number","exclusiveMinimum":0}`,
		[]string{`1`, `1.5`}, []string{`0`, `-1`}},
	{"boolean", `{"type":"boolean"}`, []string{`true`, `false`}, []string{`True`, `1`}},
	{"null", `{"type":"null"}`, []string{`null`}, []string{`nil`}},
	{"type array", `{"type":["integer","null","boolean"]}`, []string{`3`, `null`, `true`}, []string{`"3"`, `1.5`}},
	{"enum", `{"enum":["red","green",3,null,{"a":[1]}]}`,
		[]string{`"red"`, `3`, `null`, `{"a":[1]}`}, []string{`"blue"`, `4`}},
	{"enum filtered by type", `{"type":"string","enum":["a",1,"b"]}`, []string{`"a"`, `"b"`}, []string{`1`}},
	{"const", `{"const":"fixed"}`, []string{`"fixed"`}, []string{`"other"`}},
	{"const with escapes", `{"const":"say \"hi\"\\n\u0001"}`, []string{`"say \"hi\"\\n\u0001"`}, []string{`"say"`}},
	{"object all required", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a","b"],"additionalProperties":false}`,
		[]string{`{"a":1,"b":"x"}`, `{"a": 1, "b": "x"}`}, []string{`{"a":1}`, `{"b":"x","a":1}`, `{"a":1,"b":"x","c":2}`, `{}`}},
	{"object optional", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"]}`,
		[]string{`{"b":"x"}`, `{"a":1,"b":"x"}`, `{"b":"x","c":true}`, `{"a":1,"b":"x","c":false}`}, []string{`{"a":1}`, `{}`, `{"a":1,"c":true}`, `{"b":"x","d":1}`, `{,"b":"x"}`}},
	{"object none required", `{"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}},"additionalProperties":false}`,
		[]string{`{}`, `{"x":1}`, `{"y":2}`, `{"x":1,"y":2}`}, []string{`{,}`, `{"y":2,"x":1}`, `{"x":1,}`}},
	{"object declaration order", `{"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"integer"},"mid":{"type":"integer"}},"required":["zeta","alpha","mid"]}`,
		[]string{`{"zeta":1,"alpha":2,"mid":3}`}, []string{`{"alpha":2,"mid":3,"zeta":1}`}},
	{"object additional schema", `{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":{"type":"integer"}}`,
		[]string{`{"name":"x"}`, `{"name":"x","n":1,"nam":2,"names":3}`}, []string{`{"name":"x","name":4}`, `{"name":"x","n":"s"}`}},
	{"object additional true", `{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":true}`,
		[]string{`{"id":1,"x":[1]}`, `{"x":null}`, `{}`}, []string{`{"id":"s"}`, `{"x":1,"id":"s"}`}},
	{"object any", `{"type":"object"}`, []string{`{}`, `{"a":{"b":[]}}`}, []string{`[]`}},
	{"nested person", person,
		[]string{`{"name":"Ann","age":30,"role":"user"}`, `{"name":"Ann","age":30,"tags":["a"],"address":{"city":"X","zip":"12345"},"role":"admin","score":0.5,"born":"2000-02-29"}`},
		[]string{`{"name":"","age":30,"role":"user"}`, `{"name":"Ann","age":151,"role":"user"}`, `{"name":"Ann","age":30,"role":"root"}`, `{"name":"Ann","age":30,"born":"2001-02-29","role":"user"}`}},
	{"array bounds", `{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4}`,
		[]string{`[1,2]`, `[1, 2, 3, 4]`}, []string{`[1]`, `[1,2,3,4,5]`, `[]`, `[1,2,]`}},
	{"array min only", `{"type":"array","items":{"type":"boolean"},"minItems":1}`,
		[]string{`[true]`, `[true,false,true]`}, []string{`[]`}},
	{"array max zero", `{"type":"array","maxItems":0}`, []string{`[]`}, []string{`[1]`}},
	{"array of any", `{"type":"array"}`, []string{`[]`, `[1,"a",[]]`}, []string{`[,]`}},
	{"tuple", `{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false,"minItems":1}`,
		[]string{`["a"]`, `["a",1]`}, []string{`[]`, `["a",1,2]`, `[1]`}},
	{"tuple then items", `{"type":"array","prefixItems":[{"const":"head"}],"items":{"type":"number"},"minItems":3,"maxItems":4}`,
		[]string{`["head",1,2]`, `["head",1,2,3]`}, []string{`["head",1]`, `["head",1,2,3,4]`, `[1,2,3]`}},
	{"anyOf", `{"anyOf":[{"type":"string","maxLength":3},{"type":"integer","minimum":5,"maximum":7}]}`,
		[]string{`"abc"`, `6`}, []string{`"abcd"`, `4`}},
	{"oneOf by type", `{"oneOf":[{"type":"string"},{"type":"array","items":{"type":"string"}}]}`,
		[]string{`"a"`, `["a"]`}, []string{`1`}},
	{"oneOf tagged union", `{"oneOf":[
		{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"],"additionalProperties":false},
		{"type":"object","properties":{"kind":{"const":"square"},"side":{"type":"number"}},"required":["kind","side"],"additionalProperties":false}]}`,
		[]string{`{"kind":"circle","r":1}`, `{"kind":"square","side":2}`}, []string{`{"kind":"circle","side":1}`}},
	{"allOf one", `{"allOf":[{"type":"integer","maximum":3,"minimum":1}]}`, []string{`1`, `3`}, []string{`4`}},
	{"defs ref", `{"$defs":{"pt":{"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}},"required":["x","y"],"additionalProperties":false}},
		"type":"object","properties":{"from":{"$ref":"#/$defs/pt"},"to":{"$ref":"#/$defs/pt"}},"required":["from","to"],"additionalProperties":false}`,
		[]string{`{"from":{"x":1,"y":2},"to":{"x":3,"y":4}}`}, []string{`{"from":{"x":1},"to":{"x":3,"y":4}}`}},
	{"recursive tree", `{"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":3}},"required":["value"],"additionalProperties":false}},"$ref":"#/$defs/node"}`,
		[]string{`{"value":1}`, `{"value":1,"children":[{"value":2,"children":[]}]}`}, []string{`{"value":1,"children":[{}]}`}},
	{"recursive linked list via definitions", `{"definitions":{"list":{"anyOf":[{"type":"null"},{"type":"object","properties":{"head":{"type":"string"},"tail":{"$ref":"#/definitions/list"}},"required":["head","tail"],"additionalProperties":false}]}},"$ref":"#/definitions/list"}`,
		[]string{`null`, `{"head":"a","tail":{"head":"b","tail":null}}`}, []string{`{"head":"a"}`}},
	{"root recursion", `{"type":"array","items":{"anyOf":[{"type":"integer"},{"$ref":"#"}]},"maxItems":3}`,
		[]string{`[1,[2,[]]]`}, []string{`[1,2,3,4]`, `[[1,2,3,4]]`}},
	{"formats", `{"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"time"},"dt":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"}},"required":["d","t","dt","u"],"additionalProperties":false}`,
		[]string{`{"d":"2024-02-29","t":"23:59:59Z","dt":"1999-12-31T00:00:00.123+05:30","u":"123e4567-e89b-12d3-a456-426614174000"}`},
		[]string{`{"d":"2023-02-29","t":"23:59:59Z","dt":"1999-12-31T00:00:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"d":"2024-13-01","t":"23:59:59Z","dt":"1999-12-31T00:00:00Z","u":"x"}`, `{"d":"2024-01-01","t":"24:00:00Z","dt":"1999-12-31T00:00:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}`}},
	{"century leap years", `{"type":"string","format":"date"}`,
		[]string{`"2000-02-29"`, `"1600-02-29"`, `"2024-02-29"`}, []string{`"1900-02-29"`, `"2100-02-29"`, `"2023-02-29"`, `"2024-04-31"`}},
	{"descriptive keywords ignored", `{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://example.com/s","title":"T","description":"D","type":"object","properties":{"a":{"type":"string","description":"x","default":"y","examples":["z"]}},"required":["a"],"additionalProperties":false}`,
		[]string{`{"a":"q"}`}, []string{`{}`}},
	{"property false is left out", `{"type":"object","properties":{"a":{"type":"integer"},"b":false},"additionalProperties":false}`,
		[]string{`{"a":1}`, `{}`}, []string{`{"b":1}`}},
	{"long maxLength in chunks", `{"type":"string","minLength":2500,"maxLength":4100}`, nil, []string{`"abc"`}},
	{"key with quote", `{"type":"object","properties":{"say \"x\"":{"type":"integer"}},"required":["say \"x\""],"additionalProperties":{"type":"null"}}`,
		[]string{`{"say \"x\"":1}`, `{"say \"x\"":1,"say":null}`}, []string{`{"say \"x\"":1,"say \"x\"":null}`}},
}

func TestFromSchemaTable(t *testing.T) {
	if len(tableCases) < 30 {
		t.Fatalf("only %d cases", len(tableCases))
	}
	for i, tc := range tableCases {
		t.Run(tc.name, func(t *testing.T) {
			gr, err := FromSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			g, err := parseGBNF(gr)
			if err != nil {
				t.Fatalf("grammar does not parse: %v\n%s", err, gr)
			}
			v := compileSchema(t, tc.schema)
			for _, s := range tc.accept {
				if err := validate(v, s); err != nil {
					t.Errorf("test bug: accept case %s does not validate: %v", s, err)
				}
				if !g.match(s) {
					t.Errorf("grammar rejects %s\n%s", s, gr)
				}
			}
			for _, s := range tc.reject {
				if g.match(s) {
					t.Errorf("grammar accepts %s\n%s", s, gr)
				}
			}
			checkSamples(t, tc.schema, gr, 300, uint64(i))
		})
	}
}

func TestUnsupported(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type":"string","pattern":"^a+$"}`, `(root): "pattern" is not supported`},
		{`{"type":"object","properties":{"x":{"type":"string","pattern":"a"}}}`, `/properties/x: "pattern" is not supported`},
		{`{"type":"number","multipleOf":3}`, `"multipleOf" is not supported`},
		{`{"type":"object","minProperties":1}`, `"minProperties" is not supported`},
		{`{"type":"object","patternProperties":{"a":{}}}`, `"patternProperties"`},
		{`{"allOf":[{"type":"string"},{"maxLength":3}]}`, `"allOf" with more than one schema`},
		{`{"type":"string","format":"email"}`, `"format" "email" is not supported`},
		{`{"oneOf":[{"type":"number"},{"type":"integer"}]}`, `"oneOf" whose alternatives 0 and 1 may both match`},
		{`{"$ref":"https://example.com/x.json"}`, `/$ref: "https://example.com/x.json"`},
		{`{"type":"object","properties":{"a":{}},"required":["b"]}`, `"required" names "b"`},
		{`{"type":"array","uniqueItems":true}`, `"uniqueItems" true`},
		{`{"not":{"type":"string"}}`, `"not" is not supported`},
		{`{"if":{"type":"string"},"then":{}}`, `"if" is not supported`},
		{`{"type":"array","contains":{"type":"string"}}`, `"contains" is not supported`},
		{`false`, `the schema false allows no value`},
		{`{"type":"integer","minimum":10,"maximum":5}`, `"minimum"`},
		{`{"type":"array","minItems":3,"maxItems":2}`, `"minItems"`},
		{`{"type":"string","maxLength":3000000}`, `"maxLength" above`},
		{`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, `"$ref"`},
		{`{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"}},"required":["next"]}},"$ref":"#/$defs/n"}`, `"$ref"`},
		{`{"type":"string","enum":[1,2]}`, `"enum"`},
		{`{"type":"string","minLength":3,"$anchor":"x"}`, `"$anchor" is not supported`},
		{`{"anyOf":[{"type":"string"}],"type":"string"}`, `"type" beside "anyOf"`},
		{`{"type":"object","properties":{"a":{"type":"string","format":"date","maxLength":4}}}`, `"format" "date" with "minLength"/"maxLength"`},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			_, err := FromSchema([]byte(tc.schema))
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, bad := range []string{`{`, `[]`, `{"type":"strin"}`, `{"type":"array","minItems":-1}`, `{"a":1,"a":2}`, `{"required":"a"}`} {
		if _, err := FromSchema([]byte(bad)); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("FromSchema(%s) = %v, want an error", bad, err)
		}
	}
}

func TestJSONObject(t *testing.T) {
	g, err := parseGBNF(JSONObject())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`{}`, `{"a": {"b": [1, 2.5, "x", null, true]}}`} {
		if !g.match(s) {
			t.Errorf("rejects %s", s)
		}
	}
	for _, s := range []string{`[]`, `"x"`, `{"a":1} `} {
		if g.match(s) {
			t.Errorf("accepts %s", s)
		}
	}
	checkSamples(t, `{"type":"object"}`, JSONObject(), 300, 1)
}

func TestLiteral(t *testing.T) {
	for in, want := range map[string]string{
		`a"b\c`:  `"a\"b\\c"`,
		"x\ny\t": `"x\ny\t"`,
		"\x01":   `"\x01"`,
		"日本":     `"日本"`,
	} {
		if got := Literal(in); got != want {
			t.Errorf("Literal(%q) = %s, want %s", in, got, want)
		}
		g, err := parseGBNF("root ::= " + Literal(in) + "\n")
		if err != nil || !g.match(in) {
			t.Errorf("Literal(%q) does not match itself: %v", in, err)
		}
	}
}

// TestBuilderComposes builds a tool-call-like grammar from two schemas and raw
// rules: names stay unique, identical sub-rules are shared, each schema keeps
// its own $defs.
func TestBuilderComposes(t *testing.T) {
	b := NewBuilder()
	s1 := `{"$defs":{"x":{"type":"integer"}},"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"required":["a"],"additionalProperties":false}`
	s2 := `{"$defs":{"x":{"type":"string"}},"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"required":["a"],"additionalProperties":false}`
	r1, err := b.Schema([]byte(s1))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Schema([]byte(s2))
	if err != nil {
		t.Fatal(err)
	}
	if r1 == r2 {
		t.Fatalf("different schemas share rule %s", r1)
	}
	r3, err := b.Schema([]byte(`{"type":"string","maxLength":5}`))
	if err != nil {
		t.Fatal(err)
	}
	r4, err := b.Schema([]byte(`{"maxLength":5,"type":"string"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r3 != r4 {
		t.Errorf("identical schemas got rules %s and %s", r3, r4)
	}
	if _, err := b.Schema([]byte(`{"type":"string","pattern":"x"}`)); err == nil {
		t.Fatal("pattern accepted")
	}
	call := b.Rule("call one", join(Literal(`{"name":"f","arguments":`), r1, `"}"`))
	call2 := b.Rule("call one", join(Literal(`{"name":"g","arguments":`), r2, `"}"`))
	if call == call2 || call != "call-one" {
		t.Errorf("rule names %q, %q", call, call2)
	}
	text := b.Grammar(call + " | " + call2 + " | \"[\" " + b.AnyJSON() + " \"]\"")
	g, err := parseGBNF(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, s := range []string{`{"name":"f","arguments":{"a":1}}`, `{"name":"g","arguments":{"a":"s"}}`, `[1]`} {
		if !g.match(s) {
			t.Errorf("rejects %s\n%s", s, text)
		}
	}
	for _, s := range []string{`{"name":"f","arguments":{"a":"s"}}`, `{"name":"g","arguments":{"a":1}}`} {
		if g.match(s) {
			t.Errorf("accepts %s", s)
		}
	}
}
