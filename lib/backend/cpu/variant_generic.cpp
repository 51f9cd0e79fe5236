// The CPU backend compiled for generic (variant.inc).
#define XNTK_CPU_ISA 0
#include "backend/cpu/variant.inc"
