#pragma once
// Everything the CPU backend's per-instruction-set code uses, included before its ISA region opens
// (isa_begin.hpp), so that the standard library and the project's ISA-neutral headers are compiled for the
// baseline instruction set in every variant: no variant ever emits a copy of an inline function that
// another variant (or the rest of the library) could end up calling.

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numbers>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/backend.hpp"
#include "backend/buffer.hpp"
#include "backend/cpu/blas.hpp"
#include "backend/cpu/cpu.hpp"
#include "backend/cpu/fast_math.hpp"
#include "backend/geometry.hpp"
#include "backend/parallel.hpp"
#include "nn/activation_fn.hpp"
#include "xntk/error.hpp"
