# Fuzz smoke run for the model-file parsers (owned by engine/formats). The main build may use g++, so the
# test compiles the fuzz targets itself with clang (tests/fuzz/run_smoke.sh); skipped when clang is absent.
add_test(NAME fuzz_smoke COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_smoke.sh)
set_tests_properties(fuzz_smoke PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS fuzz)
