# Warning and sanitizer settings as INTERFACE targets, and the one-line test helper.

add_library(shmkit_warnings INTERFACE)
target_compile_options(shmkit_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align
    $<$<BOOL:${SHMKIT_WERROR}>:-Werror>)
# g++ 12 at -O3 reports false -Wrestrict / -Wstringop-overflow inside libstdc++ and {fmt}
# (GCC bugs 105329, 105651); they are not ours to fix.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(shmkit_warnings INTERFACE -Wno-restrict -Wno-stringop-overflow)
endif()

add_library(shmkit_sanitize INTERFACE)
if(SHMKIT_SANITIZE)
  target_compile_options(shmkit_sanitize INTERFACE
      -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(shmkit_sanitize INTERFACE -fsanitize=address,undefined)
endif()

# shmkit_add_test(NAME SOURCES... [PROC] [LABELS l...] [LIBS l...])
# Builds tests/<dir>/NAME from SOURCES against shmkit and GoogleTest and registers it with
# CTest. PROC marks tests that start real processes; they run serially to stay within 2 cores.
function(shmkit_add_test name)
  cmake_parse_arguments(T "PROC" "" "SOURCES;LABELS;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE shmkit shmkit_test_support GTest::gtest GTest::gtest_main
                        shmkit_warnings shmkit_sanitize ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name})
  set(labels ${T_LABELS})
  if(T_PROC)
    list(APPEND labels proc)
    set_tests_properties(${name} PROPERTIES RUN_SERIAL ON)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT 300)
endfunction()
