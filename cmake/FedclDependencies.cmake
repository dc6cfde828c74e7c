# Every dependency comes from a Debian 12 package (deploy/setup.sh installs them).
# Nothing is downloaded at configure or build time.
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(Eigen3 3.4 CONFIG REQUIRED)
find_package(TBB CONFIG REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED)  # SHA-256 of tokens and backbones (proto/digest)
# Protobuf in module mode (Debian ships no protobuf CMake config); gRPC in CONFIG mode.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_program(FEDCL_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
if(FEDCL_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()
if(FEDCL_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG REQUIRED)
endif()

# fedcl_library(name SOURCES ... DEPS ...): a static library with a fedcl:: alias and the
# project's compile options.
function(fedcl_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(fedcl_${name} STATIC ${ARG_SOURCES})
  add_library(fedcl::${name} ALIAS fedcl_${name})
  target_include_directories(fedcl_${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>)
  target_link_libraries(fedcl_${name} PUBLIC ${ARG_DEPS} PRIVATE fedcl_compile_options)
  # Consumers compile our headers (Eigen templates) and must use the same ISA.
  target_compile_options(fedcl_${name} INTERFACE ${FEDCL_ISA_FLAGS})
endfunction()
