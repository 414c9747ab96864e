package prefix

import (
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/llorch/llorch/core/api"
)

// Stream layout. Every variable-length field is escaped and terminated
// (fieldEnd), so the encoding is prefix-free and no two different requests
// give the same bytes; tags open the parts:
//
//	raw:  kindRaw  prompt bytes (verbatim: the stream is a single field)
//	chat: kindChat {tagTool tool-JSON} {tagMsg role name tool_call_id content {tagCall id type name arguments} tagMsgEnd}
//
// Within a field, fieldEnd and escByte are written as escByte followed by
// '0' or '1'; every other byte is itself.
const (
	kindChat  = 'C'
	kindRaw   = 'P'
	tagTool   = 'T'
	tagToolX  = 't' // a tool whose parameters are not JSON: its fields one by one
	tagMsg    = 'M'
	tagCall   = 'K'
	tagMsgEnd = 'E'
	fieldEnd  = 0x00
	escByte   = 0x01
)

// AppendRequest appends the stream of req to dst: the canonical
// serialization of what a worker renders into the prompt. For a chat it
// holds the tools (unless tool_choice is none, which renders none) and every
// message's role, name, tool_call_id, content and tool calls, in order; for a
// raw prompt the prompt itself. Sampling parameters, max_tokens, stop,
// seed, logit bias, response_format, grammar, parallel_tool_calls and
// resume_tokens are not in it: they do not change the prompt text.
func AppendRequest(dst []byte, req *api.ExecuteRequest) []byte {
	if req == nil {
		return dst
	}
	if len(req.Messages) == 0 {
		dst = append(dst, kindRaw)
		return append(dst, req.Prompt...)
	}
	dst = append(dst, kindChat)
	if req.ToolChoice == nil || req.ToolChoice.Mode != api.ToolNone {
		for i := range req.Tools {
			dst = appendTool(dst, &req.Tools[i])
		}
	}
	for i := range req.Messages {
		dst = appendMessage(dst, &req.Messages[i])
	}
	return dst
}

// AppendGenerated appends what a worker's slot holds after it generated
// text for req: req's stream followed, for a chat, by the start of an
// assistant message whose content is text, serialized as the next turn's
// request (which carries that message) serializes it up to the end of the
// text; for a raw prompt by text itself. So the stream of a conversation's
// next turn has this stream as a byte prefix.
func AppendGenerated(dst []byte, req *api.ExecuteRequest, text string) []byte {
	if req == nil {
		return dst
	}
	dst = AppendRequest(dst, req)
	if len(req.Messages) == 0 {
		return append(dst, text...)
	}
	dst = append(dst, tagMsg)
	dst = appendField(dst, "assistant")
	dst = appendField(dst, "") // name
	dst = appendField(dst, "") // tool_call_id
	return appendEscaped(dst, text)
}

func appendMessage(dst []byte, m *api.Message) []byte {
	dst = append(dst, tagMsg)
	dst = appendField(dst, m.Role)
	dst = appendField(dst, m.Name)
	dst = appendField(dst, m.ToolCallID)
	dst = appendField(dst, m.Content)
	for i := range m.ToolCalls {
		c := &m.ToolCalls[i]
		dst = append(dst, tagCall)
		dst = appendField(dst, c.ID)
		dst = appendField(dst, c.Type)
		dst = appendField(dst, c.Function.Name)
		dst = appendField(dst, c.Function.Arguments)
	}
	return append(dst, tagMsgEnd)
}

// appendTool writes a tool as canonical JSON (encoding/json's field order,
// parameters compacted); one whose parameters do not marshal is written
// field by field under another tag.
func appendTool(dst []byte, t *api.Tool) []byte {
	if b, err := json.Marshal(t); err == nil {
		dst = append(dst, tagTool)
		return appendField(dst, string(b))
	}
	dst = append(dst, tagToolX)
	dst = appendField(dst, t.Type)
	dst = appendField(dst, t.Function.Name)
	dst = appendField(dst, t.Function.Description)
	dst = appendField(dst, string(t.Function.Parameters))
	strict := ""
	if t.Function.Strict != nil {
		strict = strconv.FormatBool(*t.Function.Strict)
	}
	return appendField(dst, strict)
}

func appendField(dst []byte, s string) []byte {
	return append(appendEscaped(dst, s), fieldEnd)
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case fieldEnd:
			dst = append(dst, escByte, '0')
		case escByte:
			dst = append(dst, escByte, '1')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// FNV-1a 64 constants.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Hashes appends to dst one hash per full blockBytes-byte block of stream
// (blockBytes <= 0 means DefaultBlockBytes): h[i] is FNV-1a 64 over h[i-1]
// and block i, mixed, with h[-1] derived from the model name. A hash thus
// names the whole prefix up to its block, for that model. A partial last
// block is not hashed. The result is the same in every process.
func Hashes(dst []uint64, model string, stream []byte, blockBytes int) []uint64 {
	if blockBytes <= 0 {
		blockBytes = DefaultBlockBytes
	}
	h := uint64(fnvOffset)
	h = fnvString(h, "llorch/prefix\x00")
	h = mix(fnvString(h, model))
	var prev [8]byte
	for off := 0; len(stream)-off >= blockBytes; off += blockBytes {
		binary.LittleEndian.PutUint64(prev[:], h)
		h = fnvOffset
		for _, c := range prev {
			h = (h ^ uint64(c)) * fnvPrime
		}
		for _, c := range stream[off : off+blockBytes] {
			h = (h ^ uint64(c)) * fnvPrime
		}
		h = mix(h)
		dst = append(dst, h)
	}
	return dst
}

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

// mix is a 64-bit finalizer (splitmix64's): FNV-1a alone spreads the last
// bytes of a block poorly.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
