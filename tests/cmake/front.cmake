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
