# Runs examples/tutorial_cnn (-DEXE=path) and checks its exit code and the lines the README shows.
execute_process(COMMAND ${EXE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tutorial_cnn exited with ${rc}")
endif()
foreach(expected
    "full kernel shape (20, 5, 10, 10)"
    "trace kernel shape (20, 5)\n"
    "diagonal kernel shape (20, 5, 10)\n"
    "conv method  layer 4: gradients"
    "conv method  layer 2: gradients"
    "conv method  layer 0: gradients"
    "component 6.weight"
    "component 6.bias"
    "component 4.weight"
    "component 4.bias"
    "component 2.weight"
    "component 2.bias"
    "component 0.weight"
    "component 0.bias"
    "largest explicit-vs-autograd difference"
    "OK\n")
  string(FIND "${out}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "tutorial_cnn's output lacks \"${expected}\"")
  endif()
endforeach()
