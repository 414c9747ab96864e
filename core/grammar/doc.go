// Package grammar translates JSON Schemas into GBNF grammars for llama.cpp's
// grammar sampler (llama_sampler_init_grammar, root rule "root"), for
// OpenAI's response_format {type: "json_schema"} and {type: "json_object"},
// and composes grammars for tool calls (Builder).
//
// The one promise: every string a grammar admits is a JSON value the schema
// allows. Where the translation cannot keep that promise it refuses with an
// error wrapping ErrUnsupported that names the JSON pointer and the keyword
// (`grammar: unsupported schema: /properties/x: "pattern" is not supported`).
// A grammar may admit fewer values than the schema (see "narrower" below).
//
// Output is compact JSON with at most one optional space after ':' and ','
// (never unbounded whitespace: a sampler with a weak model would loop in it),
// object members in the order the schema's text declares them, integers of
// at most 15 digits without leading zeros, numbers with at most 15 fraction
// and 2 exponent digits, strings of any JSON characters and escapes except
// \u escapes of surrogates (so a character in the text is one character of
// the decoded string, and minLength/maxLength count exactly). Characters are
// classes of Unicode scalar values, never negated classes: llama.cpp decodes
// the bytes of tokens leniently, and a negated class would let it write
// bytes that are no UTF-8 (leads F5-FF, encoded surrogates). It still takes
// overlong encodings (E0 81 81 for "A"), which no grammar can tell apart.
//
// Supported (JSON Schema 2020-12 subset, as OpenAI structured outputs uses):
//
//   - type: string, number, integer, boolean, null, object, array, and arrays
//     of them; without type, the types the other keywords talk about, or any
//     JSON value when none do ({} and true are any JSON value)
//   - properties, required; additionalProperties false, true or a schema
//     (extra members come after the declared ones, with keys of plain
//     characters that differ from every declared name); a property whose
//     schema is false is left out
//   - enum, const (filtered by type when both are given)
//   - anyOf; oneOf when its alternatives are provably disjoint (by kind of
//     value, by listed values, or by a required property with a const/enum);
//     allOf with exactly one schema
//   - $ref to JSON pointers within the document (#/$defs/..., #/definitions/...,
//     #, #/properties/...), recursion included when it passes through an
//     object or array and can end
//   - items (a schema or false), prefixItems, minItems, maxItems;
//     uniqueItems false (true only with maxItems <= 1)
//   - minLength, maxLength (counts above llama.cpp's 2000 repetition limit
//     are built from chunks; at most 2,000,000)
//   - format on strings: date, time, date-time (RFC 3339, real calendar
//     dates with leap years, seconds 00-59, Z or ±hh:mm), uuid (lower case)
//   - minimum, maximum, exclusiveMinimum, exclusiveMaximum on integers (exact
//     digit ranges) and numbers (plain decimals: an integer part in range,
//     with a fraction only where every fraction stays in range)
//   - ignored: title, description, default, examples, $schema, $id (root
//     only), $comment, deprecated, readOnly, writeOnly, $defs, definitions
//
// Narrower than the schema: additionalProperties absent beside properties
// means no extra members; bounded numbers are written without exponents;
// integers have at most 15 digits; date-time uses upper-case T and Z; uuids
// are lower case; extra member keys use no escapes.
//
// Refused (ErrUnsupported): pattern, patternProperties, propertyNames,
// minProperties, maxProperties, dependentRequired, dependentSchemas,
// multipleOf, contains, minContains, maxContains, not, if/then/else,
// unevaluatedProperties, unevaluatedItems, $anchor, $dynamicRef, contentEncoding,
// contentMediaType, any unknown keyword; allOf with several schemas; $ref,
// anyOf, oneOf or allOf beside constraining keywords; oneOf whose
// alternatives may overlap; formats other than the four above; references
// outside the document; recursion that never ends or passes through no
// object or array; the schema false; constraints no value meets. Input that
// is not a schema at all (not JSON, duplicate keys, a keyword of the wrong
// type) is an error wrapping ErrInvalid.
//
// Limits: translation takes time about linear in the schema (no pass over
// every rule per rule, no search for a free name from the start, indexed
// objects, numbers like 1e999999 read without arithmetic, oneOf checked
// without comparing every two alternatives). The grammar of one Builder
// (every schema of a tool-call request together) is refused past
// MaxGrammarBytes (64 KiB) or MaxRules (2048), checked as it grows, and
// bounds (minimum, ...) with more than 400 significant digits are refused.
// Why 64 KiB (measured on a 2-core x86 VM, llama.cpp parser and the
// 768-token synthetic model, 0.14 ms a token without a grammar):
//
//	schema                   grammar   llama.cpp parse   per token
//	500 optional strings      71 KB       12 ms           8.4 ms
//	1000 optional strings    143 KB       30 ms            23 ms
//	2500 optional strings    370 KB      210 ms           163 ms
//	1000 required strings    123 KB        3 ms          0.25 ms
//	enum of 1000 strings      13 KB      0.1 ms           3.2 ms
//	enum of 7000 strings      97 KB      0.7 ms            78 ms
//
// The grammar sampler keeps a stack per way the output may go on (n for n
// optional properties, one per enum value), so the cost of a token grows with
// the alternatives more than with the bytes; 64 KiB keeps llama.cpp's parse
// near 10 ms and the worst shapes measured under about 40 ms a token on the
// synthetic model (more with a real vocabulary); it holds eleven schemas
// of 40 optional properties each.
package grammar
