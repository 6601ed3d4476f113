# deltagate bench (issue 11) against a real loopback cluster on the built-in tiny CPU model, through both
# drivers (gRPC and the front's OpenAI HTTP API): tests/benchcli/bench_cli_test.py, standard library only,
# under Debian's /usr/bin/python3. The plots need gnuplot (deploy/install-deps.sh installs gnuplot-nox).
# The statistics, workload and HTTP-parsing unit tests are test_bench (tests/unit/bench).
find_program(DG_BENCH_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(TARGET deltagate AND DG_BENCH_PYTHON)
  add_test(NAME bench_cli
           COMMAND ${DG_BENCH_PYTHON} ${PROJECT_SOURCE_DIR}/tests/benchcli/bench_cli_test.py
                   --deltagate $<TARGET_FILE:deltagate> --work ${PROJECT_BINARY_DIR}/bench_cli)
  set_tests_properties(bench_cli PROPERTIES TIMEOUT 600 LABELS "bench")
endif()
