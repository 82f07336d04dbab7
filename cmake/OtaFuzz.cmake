# -DOTA_FUZZ=ON with -DCMAKE_CXX_COMPILER=clang++-14: the libFuzzer build (docs/fuzzing.md), in its
# own build dir (build-fuzz). libFuzzer is clang-only here: g++'s -fsanitize-coverage=trace-pc is
# refused by libFuzzer 14 ("no longer supported"). Every library is instrumented for coverage and
# built with ASan + UBSan (fatal); the fuzz targets link -fsanitize=fuzzer (fuzz/CMakeLists.txt).
# clang 14 + libstdc++ 12 have no std::expected: ota/expected_compat.hpp provides it.
if(NOT OTA_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "OTA_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++-14 "
                      "(this is ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION})")
endif()
set(_ota_fuzz_flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -gline-tables-only)
add_compile_options(${_ota_fuzz_flags})
add_link_options(-fsanitize=address,undefined)
message(STATUS "OTA_FUZZ: ${_ota_fuzz_flags}")
