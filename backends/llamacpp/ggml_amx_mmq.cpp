// See ggml_amx.cpp.
#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
#include "amx/mmq.cpp"
#endif
