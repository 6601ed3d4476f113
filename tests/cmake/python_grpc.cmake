# Tests with Debian's Python gRPC stack (tests/python): the gRPC API through python3-grpcio with stubs that
# protoc + grpc_python_plugin compile from proto/ into the build dir, and `promtool check metrics` on the
# /metrics of a real front and real workers. Debian's interpreter (/usr/bin/python3) is named explicitly:
# another python3 first on PATH (pyenv) does not see the Debian packages. deploy/install-deps.sh installs
# python3-grpcio, python3-protobuf and prometheus; a missing one fails these tests with a message.
find_program(DG_DEBIAN_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(TARGET deltagate AND DG_DEBIAN_PYTHON)
  set(dg_py_args --deltagate $<TARGET_FILE:deltagate> --proto-dir ${PROJECT_SOURCE_DIR}/proto)
  add_test(NAME grpc_python_client
           COMMAND ${DG_DEBIAN_PYTHON} ${PROJECT_SOURCE_DIR}/tests/python/grpc_client_test.py ${dg_py_args}
                   --work ${PROJECT_BINARY_DIR}/python_grpc_client)
  add_test(NAME metrics_promtool
           COMMAND ${DG_DEBIAN_PYTHON} ${PROJECT_SOURCE_DIR}/tests/python/metrics_promtool_test.py ${dg_py_args}
                   --work ${PROJECT_BINARY_DIR}/python_metrics_promtool)
  # Workers that require the shared token, called directly by grpcio without it (UNAUTHENTICATED).
  add_test(NAME worker_auth_python
           COMMAND ${DG_DEBIAN_PYTHON} ${PROJECT_SOURCE_DIR}/tests/python/worker_auth_test.py ${dg_py_args}
                   --work ${PROJECT_BINARY_DIR}/python_worker_auth)
  set_tests_properties(grpc_python_client metrics_promtool worker_auth_python PROPERTIES TIMEOUT 300
                       LABELS "front;worker;python")
  if(TARGET dg_cuda_emu)  # a device fault injected by the CPU emulation of CUDA into a real worker
    add_test(NAME cuda_device_fault
             COMMAND ${DG_DEBIAN_PYTHON} ${PROJECT_SOURCE_DIR}/tests/python/device_fault_test.py ${dg_py_args}
                     --work ${PROJECT_BINARY_DIR}/python_device_fault)
    set_tests_properties(cuda_device_fault PROPERTIES TIMEOUT 300 LABELS "cuda;worker;python")
  endif()
endif()
