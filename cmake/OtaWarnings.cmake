# One INTERFACE target carries the warning flags; every project target links it.
add_library(ota_warnings INTERFACE)
add_library(ota::warnings ALIAS ota_warnings)
target_compile_options(ota_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow
  -Wsuggest-override -Wnon-virtual-dtor -Wold-style-cast)
if(OTA_WERROR)
  target_compile_options(ota_warnings INTERFACE -Werror)
endif()
