// Closes the region opened by isa_begin.hpp.
#ifdef XNTK_ISA_TARGETED
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef XNTK_ISA_TARGETED
#endif
