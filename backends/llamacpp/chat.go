package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// This file is the test oracle for core/prompt, not a production path: the
// worker formats chats with core/prompt in Go, and core/prompt's tests compare
// its output, byte for byte, with what llama.cpp writes here (ApplyTemplate)
// and its template list with llama.cpp's (BuiltinTemplates).

// ErrNoChatTemplate is returned by ApplyTemplate when llama.cpp recognises no
// chat format in the template.
var ErrNoChatTemplate = errors.New("llamacpp: no known chat template")

// ChatMessage is one message of a chat, as ApplyTemplate hands it to llama.cpp.
type ChatMessage struct {
	Role    string
	Content string
}

// ApplyTemplate formats msgs with llama.cpp's llama_chat_apply_template and no
// model: tmpl is a built-in template name ("chatml", "llama3", ...) or a Jinja
// chat template source, which llama.cpp matches to a built-in format by its
// markers. An empty tmpl means llama.cpp's default, chatml. addAssistant
// appends the start of an assistant turn (for the formats that have one).
//
// llama.cpp reads C strings: text after a NUL byte in a role or content is
// not seen. It fails with ErrNoChatTemplate when it recognises no format in
// tmpl.
//
// It is the reference core/prompt's tests compare against; nothing else calls
// it.
func ApplyTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	var ctmpl *C.char // NULL selects chatml
	if tmpl != "" {
		ctmpl = C.CString(tmpl)
		defer C.free(unsafe.Pointer(ctmpl))
	}
	n := len(msgs)
	var chat *C.struct_llama_chat_message
	if n > 0 {
		p := C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{})))
		defer C.free(p)
		chat = (*C.struct_llama_chat_message)(p)
		cm := unsafe.Slice(chat, n)
		for i, m := range msgs {
			cm[i].role = C.CString(m.Role)
			cm[i].content = C.CString(m.Content)
			defer C.free(unsafe.Pointer(cm[i].role))
			defer C.free(unsafe.Pointer(cm[i].content))
		}
	}
	size := 256
	for _, m := range msgs {
		size += 2*(len(m.Role)+len(m.Content)) + 64
	}
	for {
		buf := C.malloc(C.size_t(size))
		got := int(C.llama_chat_apply_template(ctmpl, chat, C.size_t(n), C.bool(addAssistant), (*C.char)(buf), C.int32_t(size)))
		switch {
		case got < 0:
			C.free(buf)
			return "", fmt.Errorf("%w (template %q)", ErrNoChatTemplate, abbrev(tmpl))
		case got > size:
			C.free(buf)
			size = got
			continue
		}
		s := C.GoStringN((*C.char)(buf), C.int(got))
		C.free(buf)
		return s, nil
	}
}

// BuiltinTemplates lists the names of llama.cpp's built-in chat templates:
// core/prompt's tests check that it knows exactly these.
func BuiltinTemplates() []string {
	n := int(C.llama_chat_builtin_templates(nil, 0))
	if n <= 0 {
		return nil
	}
	out := make([]*C.char, n)
	n = min(n, int(C.llama_chat_builtin_templates(&out[0], C.size_t(n))))
	names := make([]string, n)
	for i := range names {
		names[i] = C.GoString(out[i])
	}
	return names
}

// abbrev shortens a template source for an error message.
func abbrev(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
