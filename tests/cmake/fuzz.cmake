# Fuzz smoke run for the model-file parsers (engine/formats), the front's request validation and chat
# rendering, and the worker's request conversion. The main build may use g++, so the test compiles the
# fuzz targets itself with clang (tests/fuzz/run_smoke.sh); skipped when clang is absent. The script keeps
# itself near DG_FUZZ_BUDGET (240 s) by shrinking the fuzzing time; the timeout is a hang guard for a
# machine so loaded that compiling alone takes longer.
add_test(NAME fuzz_smoke COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_smoke.sh)
set_tests_properties(fuzz_smoke PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS fuzz)
