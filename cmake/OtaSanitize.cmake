# -DOTA_SANITIZE=address,undefined | thread (comma list): every target of this build dir is compiled
# and linked with those sanitizers. UBSan errors are fatal (-fno-sanitize-recover), so a test fails on
# the first one instead of printing and carrying on.
set(OTA_SANITIZE "" CACHE STRING "Sanitizers for every target: address,undefined | thread | empty")
set(OTA_SANITIZER_TESTS_SLOWER OFF)

if(OTA_SANITIZE)
  string(REPLACE "," ";" _ota_san_list "${OTA_SANITIZE}")
  foreach(s IN LISTS _ota_san_list)
    if(NOT s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "OTA_SANITIZE: '${s}' is not one of address, undefined, thread")
    endif()
  endforeach()
  if("thread" IN_LIST _ota_san_list AND "address" IN_LIST _ota_san_list)
    message(FATAL_ERROR "OTA_SANITIZE: thread and address cannot be combined (separate build dirs)")
  endif()
  if(OTA_FUZZ)
    message(FATAL_ERROR "OTA_SANITIZE and OTA_FUZZ are separate builds (the fuzz build picks its own)")
  endif()

  set(_ota_san_flags "-fsanitize=${OTA_SANITIZE}" -fno-omit-frame-pointer)
  if("undefined" IN_LIST _ota_san_list)
    list(APPEND _ota_san_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${_ota_san_flags})
  add_link_options(${_ota_san_flags})
  # g++ 12 warns "may be used uninitialized" inside libstdc++ (std::expected, std::function in
  # <regex>) once the sanitizers' instrumentation is in: 72 such warnings in a full ASan build,
  # none in the plain one, where the warning stays on (and is an error with OTA_WERROR).
  add_compile_options(-Wno-maybe-uninitialized)
  # -O1 -g1 (after the build type's -O2 -g, so they win): what the sanitizers' docs advise, line
  # tables are enough for their stack traces, and a file compiles in half the time (34.9 s ->
  # 17.0 s for tests/controller/engine_input_test.cpp, 14.1 s -> 7.3 s for ingest.cpp, ASan+UBSan).
  add_compile_options(-O1 -g1)

  # Runtime options: compiled into every executable (see sanitizer_defaults.cpp.in and
  # ota_sanitize_executables below), so ctest, gtest discovery and the daemons a test starts all get
  # them. (CTest ENVIRONMENT properties cannot carry two variables through gtest_discover_tests in
  # CMake 3.25: its PROPERTIES list is flattened.)
  set(OTA_SANITIZER_TESTS_SLOWER ON)
  message(STATUS "OTA_SANITIZE=${OTA_SANITIZE}: ${_ota_san_flags}")
endif()

# Called once at the end of the top-level CMakeLists.txt: adds sanitizer_defaults.cpp to every
# executable defined anywhere below `dir`.
function(ota_sanitize_executables dir)
  if(NOT OTA_SANITIZE)
    return()
  endif()
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE")
      target_sources(${t} PRIVATE "${PROJECT_BINARY_DIR}/sanitizer_defaults.cpp")
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(d IN LISTS subdirs)
    ota_sanitize_executables("${d}")
  endforeach()
endfunction()
if(OTA_SANITIZE)
  configure_file("${CMAKE_CURRENT_LIST_DIR}/sanitizer_defaults.cpp.in"
    "${PROJECT_BINARY_DIR}/sanitizer_defaults.cpp" @ONLY)
endif()
