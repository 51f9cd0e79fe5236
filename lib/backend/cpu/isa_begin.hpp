// Opens the code region of one CPU backend variant (included by variant.inc only, after prelude.hpp).
// XNTK_CPU_ISA selects it: 0 generic x86-64, 2 AVX2 + FMA, 3 AVX-512 (F, CD, BW, DQ, VL). Every function
// defined up to isa_end.hpp, lambdas included, is compiled for that instruction set by a target attribute
// (GCC's `#pragma GCC target`, Clang's `#pragma clang attribute`), and the code lives in a namespace of its
// own (XNTK_ISA), so no two variants ever share a symbol. Everything included before (the standard library,
// the ISA-neutral project headers) stays baseline code, so the linker can never pick an AVX-512 copy of an
// inline function for a CPU without AVX-512. Rules for the code inside: include nothing new (prelude.hpp
// does), and write no OpenMP parallel region (Clang compiles its outlined body without the target): pass
// lambdas to the loops of backend/parallel.hpp instead.

#ifndef XNTK_CPU_ISA
#error "XNTK_CPU_ISA must be defined (0, 2 or 3)"
#endif

// (The feature lists are spelled out per variant: GCC does not expand macros in `#pragma GCC target`.)
#if XNTK_CPU_ISA == 3
#define XNTK_ISA isa_avx512
#define XNTK_ISA_TARGETED 1
#if defined(__clang__)
#pragma clang attribute push(                                                                                         \
    __attribute__((target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe")
#endif
#elif XNTK_CPU_ISA == 2
#define XNTK_ISA isa_avx2
#define XNTK_ISA_TARGETED 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe")
#endif
#elif XNTK_CPU_ISA == 0
#define XNTK_ISA isa_generic
#else
#error "XNTK_CPU_ISA must be 0, 2 or 3"
#endif
