# The real `deltagate worker` process on loopback (tests/unit/worker/process_test.cpp): serve, drain on
# SIGTERM, SIGKILL mid-stream. The same gtest binary skips these cases when DG_DELTAGATE_BIN is unset.
if(TARGET test_worker AND TARGET deltagate)
  add_test(NAME worker_process COMMAND test_worker --gtest_filter=Process.*)
  set_tests_properties(worker_process PROPERTIES
    ENVIRONMENT "DG_DELTAGATE_BIN=$<TARGET_FILE:deltagate>"
    TIMEOUT 180 LABELS "worker;integration")
endif()

# The refused calls (tests/unit/worker/auth_test.cpp: RefusedStream reactors finished before the handler
# returns, every method called without the token) again under AddressSanitizer: the worker's and
# services/common's sources compiled with -fsanitize=address into the test itself (the libraries below
# them are the plain build's), as front_call_lifetime_asan does for the front.
if(TARGET test_worker AND TARGET dg_worker AND TARGET dg_common)
  get_target_property(dg_worker_src dg_worker SOURCES)
  get_target_property(dg_common_src_w dg_common SOURCES)
  add_executable(test_worker_auth_asan ${dg_worker_src} ${dg_common_src_w}
                 ${PROJECT_SOURCE_DIR}/tests/unit/worker/auth_test.cpp)
  target_compile_options(test_worker_auth_asan PRIVATE -fsanitize=address -fno-omit-frame-pointer)
  target_link_options(test_worker_auth_asan PRIVATE -fsanitize=address)
  target_include_directories(test_worker_auth_asan PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(test_worker_auth_asan PRIVATE
                             DG_SOURCE_DIR="${PROJECT_SOURCE_DIR}" DG_BINARY_DIR="${PROJECT_BINARY_DIR}")
  get_target_property(dg_worker_libs dg_worker LINK_LIBRARIES)
  list(REMOVE_ITEM dg_worker_libs dg_common)
  target_link_libraries(test_worker_auth_asan PRIVATE ${dg_worker_libs} GTest::gtest GTest::gtest_main)
  add_test(NAME worker_auth_asan COMMAND test_worker_auth_asan)
  # The gRPC and protobuf libraries are not instrumented; leaks at exit in them are not ours to report.
  set_tests_properties(worker_auth_asan PROPERTIES TIMEOUT 600 LABELS "worker;asan"
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
endif()
