# Installs the built shmkit into a scratch prefix, then builds and runs a consumer project
# with find_package(shmkit), and a one-file program with pkg-config's flags.
# Arguments: -DBUILD_DIR=<shmkit build> -DSOURCE_DIR=<this folder> -DWORK=<scratch dir>
#            -DCXX=<compiler>
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
macro(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endmacro()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/app -B ${WORK}/app -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK}/app)
run(${WORK}/app/consumer)
message(STATUS "find_package consumer: ${out}")

file(GLOB_RECURSE pc_file ${prefix}/*/shmkit.pc)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
run(pkg-config --cflags --libs shmkit)
string(STRIP "${out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX} -std=c++20 ${SOURCE_DIR}/app/main.cpp ${flags} -o ${WORK}/pc_consumer)
run(${WORK}/pc_consumer)
message(STATUS "pkg-config consumer: ${out}")
