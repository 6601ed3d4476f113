# The Helm chart (helm/deltagate) checked against the real `deltagate` binary: values, flags, ports, probes,
# worker discovery (tests/helm/chart_check.py). Helm is not a Debian package, so the checks read the
# templates; when a `helm` binary is on PATH the test also lints and renders the chart and checks the
# rendered objects. Needs python3-yaml (deploy/install-deps.sh).
if(TARGET deltagate)
  find_program(DG_SYSTEM_PYTHON3 python3 HINTS /usr/bin)
  find_program(DG_HELM helm)
  set(dg_helm_arg)
  if(DG_HELM)
    set(dg_helm_arg --helm ${DG_HELM})
  endif()
  add_test(NAME helm_chart
           COMMAND ${DG_SYSTEM_PYTHON3} ${PROJECT_SOURCE_DIR}/tests/helm/chart_check.py
                   --chart ${PROJECT_SOURCE_DIR}/helm/deltagate --deltagate $<TARGET_FILE:deltagate> ${dg_helm_arg})
  set_tests_properties(helm_chart PROPERTIES TIMEOUT 300 LABELS deploy)
endif()
