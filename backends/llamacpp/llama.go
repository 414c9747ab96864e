package llamacpp

/*
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include "helpers.h"
#include "sample.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/llorch/llorch/backends"

	// Compiles libllama and ggml (CPU) into the binary.
	_ "github.com/ollama/ollama/llama/llama.cpp/src"
)

// Errors returned by this package.
var (
	ErrLoad    = errors.New("llamacpp: cannot load model")
	ErrContext = errors.New("llamacpp: cannot create context")
	ErrDecode  = errors.New("llamacpp: decode failed")
)

var initOnce sync.Once

// logger receives llama.cpp's log lines; nil drops them.
var logger atomic.Pointer[slog.Logger]

// SetLogger routes llama.cpp's log output to l (at debug level for its info
// lines); nil silences it.
func SetLogger(l *slog.Logger) { logger.Store(l) }

func backendInit() {
	initOnce.Do(func() {
		C.llorch_set_log()
		C.llama_backend_init()
	})
}

//export llorchLog
func llorchLog(level C.int, text *C.char, _ unsafe.Pointer) {
	if level == C.GGML_LOG_LEVEL_ERROR {
		if c := grammarCapture.Load(); c != nil {
			c.add(strings.TrimRight(C.GoString(text), "\n"))
		}
	}
	l := logger.Load()
	if l == nil {
		return
	}
	msg := strings.TrimRight(C.GoString(text), "\n")
	if msg == "" {
		return
	}
	switch level {
	case C.GGML_LOG_LEVEL_ERROR:
		l.Error(msg, "component", "llama.cpp")
	case C.GGML_LOG_LEVEL_WARN:
		l.Warn(msg, "component", "llama.cpp")
	default:
		l.Debug(msg, "component", "llama.cpp")
	}
}

//export llorchProgress
func llorchProgress(progress C.float, user unsafe.Pointer) C.bool {
	fn := cgo.Handle(uintptr(user)).Value().(func(float32) bool)
	return C.bool(fn(float32(progress)))
}

// SystemInfo reports what llama.cpp was compiled with (SIMD features, REPACK, ...).
func SystemInfo() string {
	backendInit()
	return C.GoString(C.llama_print_system_info())
}

// LoadParams configure Load.
type LoadParams struct {
	// GPULayers is the number of layers to offload; -1 means all. Ignored on CPU builds.
	GPULayers int
	MainGPU   int
	NoMmap    bool
	// Device, when set (from LoadBackend), receives every offloaded layer.
	Device *Device
	// Progress is called with values from 0 to 1 while loading; returning false aborts.
	Progress func(float32) bool
}

// Model is a loaded GGUF model.
type Model struct {
	m      *C.struct_llama_model
	vocab  *C.struct_llama_vocab
	info   backends.Info
	pieces [][]byte
	eog    []bool
	dev    *Device

	// hidden are the control tokens with text of their own (the grammar
	// matches it) that the output renders as nothing, end of generation aside.
	hidden []C.int32_t
	// utf8 is the table of token bytes the UTF-8 sampler reads (built on
	// the first grammar request; guarded by utf8Once).
	utf8     unsafe.Pointer
	utf8Once sync.Once
}

// utf8Table returns the model's token byte table for the UTF-8 sampler.
func (m *Model) utf8Table() unsafe.Pointer {
	m.utf8Once.Do(func() {
		var ptr *C.int32_t
		if len(m.hidden) > 0 {
			ptr = &m.hidden[0]
		}
		m.utf8 = C.llorch_utf8_table_new(m.vocab, ptr, C.int32_t(len(m.hidden)))
	})
	return m.utf8
}

var (
	_ backends.Model          = (*Model)(nil)
	_ backends.DeviceReporter = (*Model)(nil)
)

// Load reads a GGUF file.
func Load(path string, p LoadParams) (*Model, error) {
	backendInit()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h cgo.Handle
	if p.Progress != nil {
		h = cgo.NewHandle(p.Progress)
		defer h.Delete()
	}
	ngl := p.GPULayers
	if ngl < 0 {
		ngl = 999
	}
	m := loadModel(cpath, ngl, p, uintptr(h))
	if m == nil {
		return nil, fmt.Errorf("%w: %s (not a GGUF file llama.cpp supports? run with --log-level debug for details)", ErrLoad, path)
	}
	mod := &Model{m: m, vocab: C.llama_model_get_vocab(m), dev: p.Device}
	mod.info = backends.Info{
		Arch:      mod.meta("general.architecture"),
		CtxTrain:  int(C.llama_model_n_ctx_train(m)),
		VocabSize: int(C.llama_vocab_n_tokens(mod.vocab)),
		Params:    uint64(C.llama_model_n_params(m)),
		SizeBytes: uint64(C.llama_model_size(m)),
	}
	var desc [256]C.char
	if n := C.llama_model_desc(m, &desc[0], C.size_t(len(desc))); n > 0 {
		mod.info.Desc = C.GoString(&desc[0])
	}
	if t := C.llama_model_chat_template(m, nil); t != nil {
		mod.info.HasChatTpl = true
		mod.info.ChatTemplateSource = C.GoString(t)
	}
	mod.pieces = make([][]byte, mod.info.VocabSize)
	mod.eog = make([]bool, mod.info.VocabSize)
	buf := make([]byte, 256)
	for i := range mod.pieces {
		n := C.llama_token_to_piece(mod.vocab, C.llama_token(i), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, false)
		if n > 0 {
			mod.pieces[i] = append([]byte(nil), buf[:n]...)
		}
		mod.eog[i] = bool(C.llama_vocab_is_eog(mod.vocab, C.llama_token(i)))
		if n == 0 && !mod.eog[i] {
			// A control token renders empty, but for the markers of tool
			// calls: the output parser needs them. The others are hidden.
			n = C.llama_token_to_piece(mod.vocab, C.llama_token(i), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, true)
			switch {
			case n > 0 && toolMarkers[string(buf[:n])]:
				mod.pieces[i] = append([]byte(nil), buf[:n]...)
			case n > 0:
				mod.hidden = append(mod.hidden, C.int32_t(i))
			}
		}
	}
	return mod, nil
}

// toolMarkers are the control tokens that are rendered as text: model
// families write tool calls with them (Llama 3.1's <|python_tag|>,
// Mistral's [TOOL_CALLS], [ARGS], [CALL_ID]; Hermes' <tool_call>).
var toolMarkers = map[string]bool{
	"<|python_tag|>": true, "[TOOL_CALLS]": true, "[ARGS]": true, "[CALL_ID]": true,
	"<tool_call>": true, "</tool_call>": true,
}

func (m *Model) meta(key string) string {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var buf [512]C.char
	if n := C.llama_model_meta_val_str(m.m, ck, &buf[0], C.size_t(len(buf))); n < 0 {
		return ""
	}
	return C.GoString(&buf[0])
}

// Info describes the model.
func (m *Model) Info() backends.Info { return m.info }

// Tokenize implements backends.Model.
func (m *Model) Tokenize(text string, addSpecial, special bool) ([]backends.Token, error) {
	if text == "" {
		return nil, nil
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	toks := make([]backends.Token, len(text)+8)
	for {
		n := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])),
			C.int32_t(len(toks)), C.bool(addSpecial), C.bool(special))
		switch {
		case n == C.INT32_MIN:
			return nil, errors.New("llamacpp: tokenize: text too long")
		case n < 0:
			toks = make([]backends.Token, -n)
		default:
			return toks[:n], nil
		}
	}
}

// Piece implements backends.Model.
func (m *Model) Piece(t backends.Token) []byte {
	if t < 0 || int(t) >= len(m.pieces) {
		return nil
	}
	return m.pieces[t]
}

// IsEOG implements backends.Model.
func (m *Model) IsEOG(t backends.Token) bool { return t >= 0 && int(t) < len(m.eog) && m.eog[t] }

// Close frees the model. Contexts must be closed first.
func (m *Model) Close() error {
	if m.utf8 != nil {
		C.llorch_utf8_table_free(m.utf8)
		m.utf8 = nil
	}
	if m.m != nil {
		C.llama_model_free(m.m)
		m.m = nil
	}
	return nil
}

// Quantization types accepted by Quantize.
const (
	TypeF16  = "f16"
	TypeQ8_0 = "q8_0"
	TypeQ4_0 = "q4_0"
)

// Quantize writes a quantized copy of a GGUF model.
func Quantize(in, out, typ string, threads int) error {
	backendInit()
	p := C.llama_model_quantize_default_params()
	switch typ {
	case TypeQ8_0:
		p.ftype = C.LLAMA_FTYPE_MOSTLY_Q8_0
	case TypeQ4_0:
		p.ftype = C.LLAMA_FTYPE_MOSTLY_Q4_0
	case TypeF16:
		p.ftype = C.LLAMA_FTYPE_MOSTLY_F16
	default:
		return fmt.Errorf("llamacpp: unknown quantization type %q (want f16, q8_0 or q4_0)", typ)
	}
	p.nthread = C.int32_t(threads)
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	if rc := C.llama_model_quantize(cin, cout, &p); rc != 0 {
		return fmt.Errorf("llamacpp: quantize %s to %s failed (code %d)", in, typ, rc)
	}
	return nil
}

// owner runs functions on one locked OS thread. A function that owns the
// thread for a long time (Context.Own: a decode loop) calls the context's
// methods from that thread, and those run at once, without a hand-off.
type owner struct {
	work   chan func()
	done   chan struct{}
	thread C.pthread_t // the locked thread, set before newOwner returns
}

func newOwner() *owner {
	o := &owner{work: make(chan func()), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(o.done)
		o.thread = C.pthread_self()
		close(ready)
		for f := range o.work {
			f()
		}
	}()
	<-ready
	return o
}

// here reports whether the caller runs on the owner's thread (inside a
// function the owner runs).
func (o *owner) here() bool { return C.llorch_on_thread(o.thread) != 0 }

func (o *owner) do(f func()) {
	if o.here() {
		f()
		return
	}
	ch := make(chan struct{})
	o.work <- func() { f(); close(ch) }
	<-ch
}

func (o *owner) stop() { close(o.work); <-o.done }
