// The CPU backend compiled for avx2 (variant.inc).
#define XNTK_CPU_ISA 2
#include "backend/cpu/variant.inc"
