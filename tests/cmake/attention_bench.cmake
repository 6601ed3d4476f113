# The attention micro-benchmark (tests/bench/bench_attention_cuda.cpp) at tiny shapes on the CUDA
# emulation: shows the program runs (its timings there mean nothing); the GPU run uses the real shapes
# (tests/gpu_check.sh).
if(TARGET bench_attention_cuda AND TARGET dg_cuda_emu)
  add_test(NAME bench_attention_cuda_emu COMMAND bench_attention_cuda --tiny)
  set_tests_properties(bench_attention_cuda_emu PROPERTIES TIMEOUT 600 LABELS "cuda")
endif()
