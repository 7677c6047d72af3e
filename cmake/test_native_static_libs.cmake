# ctest wa_native_static_libs (label slow): compares the hard-coded WA_NATIVE_STATIC_LIBS with
# `cargo rustc --lib --crate-type staticlib -- --print native-static-libs`.
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env CARGO_TARGET_DIR=${TARGET_DIR}/native-libs CARGO_BUILD_JOBS=1
          ${CARGO} rustc --release --lib --crate-type staticlib --manifest-path ${MANIFEST}
          -- --print native-static-libs
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cargo failed: ${err}")
endif()
string(REGEX MATCH "native-static-libs: ([^\n]*)" _ "${err}")
string(REPLACE "-l" "" libs "${CMAKE_MATCH_1}")
string(STRIP "${libs}" libs)
string(REPLACE " " ";" libs "${libs}")
if(NOT libs STREQUAL EXPECTED)
  message(FATAL_ERROR "rustc says '${libs}', CMakeLists.txt has '${EXPECTED}'")
endif()
message(STATUS "PASS native static libs: ${libs}")
