// ggml's AMX kernels, compiled from the pinned ollama module (not copied): the
// module ships them without a cgo package, yet ggml-cpu references them when
// the target CPU has AMX (-march=native on Sapphire Rapids and later). On
// other targets this file is empty. The Makefile adds ggml's source dirs to
// the include path.
#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
#include "amx/amx.cpp"
#endif
