# The real `deltagate worker` process on loopback (tests/unit/worker/process_test.cpp): serve, drain on
# SIGTERM, SIGKILL mid-stream. The same gtest binary skips these cases when DG_DELTAGATE_BIN is unset.
if(TARGET test_worker AND TARGET deltagate)
  add_test(NAME worker_process COMMAND test_worker --gtest_filter=Process.*)
  set_tests_properties(worker_process PROPERTIES
    ENVIRONMENT "DG_DELTAGATE_BIN=$<TARGET_FILE:deltagate>"
    TIMEOUT 180 LABELS "worker;integration")
endif()
