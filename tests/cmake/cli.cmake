# The engine subcommands of `deltagate`, run as a user runs them (tests/cli/cli_test.sh).
add_test(NAME cli_engine_commands
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/cli/cli_test.sh $<TARGET_FILE:deltagate> ${PROJECT_SOURCE_DIR})
set_tests_properties(cli_engine_commands PROPERTIES TIMEOUT 300 LABELS cli)

# --backend cuda against --backend cpu through the command line (the CPU emulation of CUDA in CI).
add_test(NAME cli_cuda_logits
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/cli/cuda_logits_test.sh $<TARGET_FILE:deltagate> ${PROJECT_SOURCE_DIR})
set_tests_properties(cli_cuda_logits PROPERTIES TIMEOUT 900 LABELS cuda SKIP_RETURN_CODE 77)
