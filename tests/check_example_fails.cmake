# Runs an example's --check that must fail (-DCOMMAND=program;args...: a fixture with one weight perturbed) and
# passes only when it exits with 1 and names a mismatch: a crash, a usage error or a pass fails the test.
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit code 1 from the perturbed check, got ${rc}")
endif()
foreach(expected "MISMATCH" "FAILED: the kernel differs from functorch's")
  string(FIND "${out}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the perturbed check's output lacks \"${expected}\"")
  endif()
endforeach()
