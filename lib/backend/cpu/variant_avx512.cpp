// The CPU backend compiled for avx512 (variant.inc).
#define XNTK_CPU_ISA 3
#include "backend/cpu/variant.inc"
