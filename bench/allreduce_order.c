/* Why the gradient sum is not MPI_Allreduce: how many elements of an MPI_Allreduce(SUM) of
 * float32 vectors differ in their bits from the sum in rank order ((x0 + x1) + x2) + ...,
 * which is what one process with grad_accum = ranks computes. Sizes from 1 KiB to 16 MiB.
 * Run by bench/bench_dist.sh: mpicc -O2 bench/allreduce_order.c && mpirun -np 4 ./a.out */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float value(uint64_t rank, uint64_t i) { /* a fixed pseudo-random gradient-like value */
  uint64_t x = (rank + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31; x *= 0x94D049BB133111EBull; x ^= x >> 29;
  return (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 1e-2f;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (size_t n = 256; n <= (size_t)4 << 20; n *= 16) {
    float* mine = malloc(n * sizeof(float));
    float* all = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; ++i) mine[i] = value(rank, i);
    MPI_Allreduce(mine, all, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
      size_t differ = 0;
      for (size_t i = 0; i < n; ++i) {
        float s = value(0, i);
        for (int r = 1; r < size; ++r) s = s + value(r, i);
        differ += memcmp(&s, &all[i], sizeof s) != 0;
      }
      printf("allreduce of %zu floats (%zu KiB) over %d ranks: %zu elements (%.1f%%) differ from the rank-order sum\n", n,
             n * 4 / 1024, size, differ, 100.0 * (double)differ / (double)n);
    }
    free(mine);
    free(all);
  }
  MPI_Finalize();
  return 0;
}
