// cuda_emu shim of cuda.h.
#pragma once
#include "cuda_emu.h"
