// MTALAB_HD: a function compiled for the host and, under nvcc, for the device too — the
// code shared bit for bit by the CPU, the GPU and the emulator (philox.h, bfloat16.h).
#pragma once

#ifdef __CUDACC__
#define MTALAB_HD __host__ __device__
#else
#define MTALAB_HD
#endif
