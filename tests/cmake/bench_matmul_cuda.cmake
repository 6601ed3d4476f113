# tests/bench/bench_matmul_cuda.cpp on the CUDA emulation at the tiny preset's shapes: shows the GPU
# benchmark runs end to end (GEMV per type, GEMV vs GEMM, the cuBLAS stand-in's GEMM); its figures mean
# nothing here. Built even with DELTAGATE_BENCH=OFF so CI always runs it.
if(DELTAGATE_CUDA_EMU)
  if(NOT TARGET bench_matmul_cuda)
    add_executable(bench_matmul_cuda ${PROJECT_SOURCE_DIR}/tests/bench/bench_matmul_cuda.cpp)
    target_link_libraries(bench_matmul_cuda PRIVATE dg_engine)
  endif()
  add_test(NAME bench_matmul_cuda_tiny COMMAND bench_matmul_cuda --shape tiny --reps 1)
  set_tests_properties(bench_matmul_cuda_tiny PROPERTIES TIMEOUT 300 LABELS "bench")
endif()
