# ota_add_test(<name> LABEL <unit|integration|fault|container> SOURCES <files...> [LIBS <targets...>])
# One place registers a GoogleTest binary with CTest; each test case becomes its own CTest test
# carrying the label, so `ctest -L unit` runs the fast ones and `ctest` runs everything.
find_package(GTest REQUIRED)
include(GoogleTest)

function(ota_add_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_LABEL)
    message(FATAL_ERROR "ota_add_test(${name}): LABEL is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  # tests-<label> builds every binary of a label (tests/CMakeLists.txt)
  set_property(GLOBAL APPEND PROPERTY OTA_TESTS_${T_LABEL} ${name})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main ota::warnings)
  target_compile_definitions(${name} PRIVATE
    OTA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    OTA_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set(props LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT})
  if(OTA_SANITIZER_TESTS_SLOWER)
    # Sanitized builds (cmake/OtaSanitize.cmake) run 2-5x slower: more time before CTest kills one.
    math(EXPR T_TIMEOUT "${T_TIMEOUT} * 3")
    set(props LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT})
  endif()
  gtest_discover_tests(${name}
    TEST_PREFIX "${name}."
    DISCOVERY_TIMEOUT 60
    PROPERTIES ${props})
endfunction()
