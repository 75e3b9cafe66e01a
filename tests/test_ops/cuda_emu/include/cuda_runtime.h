// cuda_emu shim of cuda_runtime.h.
#pragma once
#include "cuda_emu.h"
