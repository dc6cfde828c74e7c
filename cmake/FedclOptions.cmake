# Build options. Each has a default that suits a developer machine running the README.

# Instruction set for the numeric code. Eigen vectorises for whatever the compiler is told it may
# use, so this decides the speed of every layer:
#   x86-64-v3 (default): AVX2 + FMA, any x86 CPU since ~2015 (Haswell, Zen 1).
#   portable:            baseline x86-64 (SSE2), for old or unknown hardware; 1.7-2.4x slower on
#                        the training-step benchmark (docs/development.md, "Instruction sets").
#   native:              whatever the build machine has (e.g. AVX-512); not for shipping binaries.
set(FEDCL_ISA "x86-64-v3" CACHE STRING "Instruction set: x86-64-v3, portable or native")
set_property(CACHE FEDCL_ISA PROPERTY STRINGS x86-64-v3 portable native)

option(FEDCL_BUILD_TESTS "Build the GoogleTest suites" ON)
option(FEDCL_BUILD_BENCHMARKS "Build the Google Benchmark programs (never run by ctest)" ON)
option(FEDCL_WERROR "Treat compiler warnings as errors" OFF)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  if(FEDCL_ISA STREQUAL "x86-64-v3")
    set(FEDCL_ISA_FLAGS -march=x86-64-v3 -mtune=generic)
  elseif(FEDCL_ISA STREQUAL "portable")
    set(FEDCL_ISA_FLAGS -march=x86-64 -mtune=generic)
  elseif(FEDCL_ISA STREQUAL "native")
    set(FEDCL_ISA_FLAGS -march=native)
  else()
    message(FATAL_ERROR "FEDCL_ISA must be x86-64-v3, portable or native (got '${FEDCL_ISA}')")
  endif()
else()
  # Other architectures: trust the compiler's default for the target.
  set(FEDCL_ISA_FLAGS "")
endif()
message(STATUS "fedcl: instruction set ${FEDCL_ISA} (${FEDCL_ISA_FLAGS})")

# Applied to every fedcl target through fedcl_target_defaults().
add_library(fedcl_compile_options INTERFACE)
target_compile_options(fedcl_compile_options INTERFACE
  ${FEDCL_ISA_FLAGS}
  -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare
  # Options structs have a default per field; designated initializers name only what differs.
  -Wno-missing-field-initializers
  $<$<BOOL:${FEDCL_WERROR}>:-Werror>)
target_compile_definitions(fedcl_compile_options INTERFACE
  FEDCL_ISA="${FEDCL_ISA}"
  # Eigen checks every index in debug builds; keep that, but never in Release.
  $<$<CONFIG:Release>:EIGEN_NO_DEBUG>)

# Sanitizers for a separate build tree, e.g. the SDK's ThreadSanitizer target (docs/sdk.md,
# "ThreadSanitizer"): -DFEDCL_SANITIZE=thread (or address, undefined). Debian's Abseil, gRPC and oneTBB are not
# instrumented, so code under test uses std::mutex / std::thread where TSan must see the sync.
set(FEDCL_SANITIZE "" CACHE STRING "Sanitizer for every fedcl target: thread, address, undefined")
if(FEDCL_SANITIZE)
  if(NOT FEDCL_SANITIZE MATCHES "^(thread|address|undefined)$")
    message(FATAL_ERROR "FEDCL_SANITIZE must be thread, address or undefined")
  endif()
  target_compile_options(fedcl_compile_options INTERFACE -fsanitize=${FEDCL_SANITIZE} -g1
                                                         -fno-omit-frame-pointer)
  target_link_options(fedcl_compile_options INTERFACE -fsanitize=${FEDCL_SANITIZE})
endif()

# libFuzzer builds of the fuzz targets (tests/fuzz/), in a separate build tree with clang:
#   cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
#         -DFEDCL_FUZZ=ON -DFEDCL_BUILD_TESTS=OFF -DFEDCL_BUILD_BENCHMARKS=OFF
# Every fedcl target gets coverage instrumentation and AddressSanitizer + UndefinedBehavior-
# Sanitizer; the fuzz binaries link libFuzzer's driver.
option(FEDCL_FUZZ "Build the fuzz targets as libFuzzer binaries (clang only)" OFF)
if(FEDCL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FEDCL_FUZZ needs clang (-DCMAKE_CXX_COMPILER=clang++)")
  endif()
  if(FEDCL_SANITIZE)
    message(FATAL_ERROR "FEDCL_FUZZ brings its own sanitizers; leave FEDCL_SANITIZE empty")
  endif()
  target_compile_options(fedcl_compile_options INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g1
    -fno-omit-frame-pointer)
  target_link_options(fedcl_compile_options INTERFACE -fsanitize=address,undefined)
endif()
