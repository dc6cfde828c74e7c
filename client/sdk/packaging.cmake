# The edge SDK as something an application links: libfedcl_client.so and libfedcl_client.a, the
# headers of client/include/fedcl, a CMake package and a pkg-config file.
#
#   fedcl_client_shared  libfedcl_client.so.0: fedcl_sdk and every fedcl_* library it needs, with
#                        only the C and C++ APIs exported (fedcl_client.map); gRPC, Protobuf,
#                        Abseil, oneTBB, OpenSSL and zlib stay shared system libraries.
#   fedcl_client_static  libfedcl_client.a: the object files of the same fedcl_* libraries in one
#                        archive; its users link the system libraries themselves (the CMake package
#                        and `pkg-config --static` list them).
#
# Installed, `find_package(fedcl)` gives fedcl::client (the shared library) and, when the system
# libraries' CMake packages are found as well, fedcl::client_static. client.h uses Abseil types,
# so both carry Abseil's include paths and libraries.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

target_compile_definitions(fedcl_sdk PRIVATE FEDCL_VERSION="${PROJECT_VERSION}")

# ---- What the SDK is made of ------------------------------------------------------------------
# fedcl's own static libraries that fedcl_sdk links, directly or not (FEDCL_SDK_PARTS), and the
# imported targets they link (FEDCL_SDK_SYSTEM_DEPS). Walking the link graph keeps the archive
# complete when a library gains a dependency.
set(FEDCL_SDK_PARTS "")
set(FEDCL_SDK_SYSTEM_DEPS "")
set(_fedcl_todo fedcl_sdk)
while(_fedcl_todo)
  list(POP_FRONT _fedcl_todo _fedcl_item)
  # target_link_libraries() called from another directory brackets its items with "::@(dir)".
  if(_fedcl_item MATCHES "^::@")
    continue()
  endif()
  if(_fedcl_item MATCHES "^\\$<")
    message(FATAL_ERROR "packaging.cmake: cannot follow the link item '${_fedcl_item}'")
  endif()
  if(NOT TARGET ${_fedcl_item})
    message(FATAL_ERROR "packaging.cmake: fedcl_sdk links '${_fedcl_item}', which is not a "
                        "target; add it to the package's dependencies by hand")
  endif()
  get_target_property(_fedcl_aliased ${_fedcl_item} ALIASED_TARGET)
  set(_fedcl_real ${_fedcl_item})
  if(_fedcl_aliased)
    set(_fedcl_real ${_fedcl_aliased})
  endif()
  get_target_property(_fedcl_imported ${_fedcl_real} IMPORTED)
  get_target_property(_fedcl_type ${_fedcl_real} TYPE)
  if(_fedcl_imported)
    list(APPEND FEDCL_SDK_SYSTEM_DEPS ${_fedcl_item})
  elseif(_fedcl_type STREQUAL "STATIC_LIBRARY" AND _fedcl_real MATCHES "^fedcl_")
    if(NOT _fedcl_real IN_LIST FEDCL_SDK_PARTS)
      list(APPEND FEDCL_SDK_PARTS ${_fedcl_real})
      get_target_property(_fedcl_deps ${_fedcl_real} LINK_LIBRARIES)
      if(_fedcl_deps)
        list(APPEND _fedcl_todo ${_fedcl_deps})
      endif()
    endif()
  elseif(NOT _fedcl_real STREQUAL "fedcl_compile_options")
    message(FATAL_ERROR "packaging.cmake: unexpected link item '${_fedcl_item}' (${_fedcl_type})")
  endif()
endwhile()
list(REMOVE_DUPLICATES FEDCL_SDK_SYSTEM_DEPS)
# Header-only: needed to compile fedcl, not to link it.
list(REMOVE_ITEM FEDCL_SDK_SYSTEM_DEPS Eigen3::Eigen)

# A section per function and object, so that the shared library's --gc-sections drops the code
# the exported API cannot reach.
foreach(_fedcl_part IN LISTS FEDCL_SDK_PARTS)
  target_compile_options(${_fedcl_part} PRIVATE -ffunction-sections -fdata-sections)
endforeach()

# What client.h includes.
set(FEDCL_SDK_PUBLIC_DEPS absl::status absl::statusor absl::strings absl::time absl::span)

# ---- libfedcl_client.so -----------------------------------------------------------------------
# The version script is the target's only source (CMake wants one); the objects come from
# fedcl_sdk, linked whole because nothing inside the library calls the API.
add_library(fedcl_client_shared SHARED fedcl_client.map)
add_library(fedcl::client ALIAS fedcl_client_shared)
set_target_properties(fedcl_client_shared PROPERTIES
  OUTPUT_NAME fedcl_client
  EXPORT_NAME client
  VERSION ${PROJECT_VERSION}
  SOVERSION 0
  LINKER_LANGUAGE CXX
  LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fedcl_client.map)
target_link_libraries(fedcl_client_shared
  PRIVATE $<LINK_LIBRARY:WHOLE_ARCHIVE,fedcl_sdk>
  PUBLIC ${FEDCL_SDK_PUBLIC_DEPS})
target_link_options(fedcl_client_shared PRIVATE
  -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/fedcl_client.map
  -Wl,--gc-sections -Wl,--no-undefined -Wl,--as-needed)
target_include_directories(fedcl_client_shared INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/client/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# ---- libfedcl_client.a ------------------------------------------------------------------------
set(_fedcl_objects "")
foreach(_fedcl_part IN LISTS FEDCL_SDK_PARTS)
  list(APPEND _fedcl_objects $<TARGET_OBJECTS:${_fedcl_part}>)
endforeach()
add_library(fedcl_client_static STATIC ${_fedcl_objects})
add_library(fedcl::client_static ALIAS fedcl_client_static)
set_target_properties(fedcl_client_static PROPERTIES
  OUTPUT_NAME fedcl_client
  EXPORT_NAME client_static
  LINKER_LANGUAGE CXX)
set(_fedcl_static_deps ${FEDCL_SDK_PUBLIC_DEPS} ${FEDCL_SDK_SYSTEM_DEPS})
list(REMOVE_DUPLICATES _fedcl_static_deps)
target_link_libraries(fedcl_client_static INTERFACE ${_fedcl_static_deps})
target_include_directories(fedcl_client_static INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/client/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# ---- Where the system libraries come from ------------------------------------------------------
# For each imported target: the package that defines it (for the CMake package) and its .pc file
# (for Requires.private).
set(FEDCL_PC_REQUIRES "")
foreach(_fedcl_dep IN LISTS FEDCL_SDK_PUBLIC_DEPS)
  string(REPLACE "absl::" "absl_" _fedcl_pc ${_fedcl_dep})
  list(APPEND FEDCL_PC_REQUIRES ${_fedcl_pc})
endforeach()
set(FEDCL_PC_REQUIRES_PRIVATE "")
set(FEDCL_PC_LIBS_PRIVATE "-lstdc++ -lm")  # for C programs linking the archive
set(FEDCL_STATIC_PACKAGES "")
foreach(_fedcl_dep IN LISTS FEDCL_SDK_SYSTEM_DEPS)
  set(_fedcl_pc "")
  if(_fedcl_dep MATCHES "^absl::(.*)$")
    set(_fedcl_pc absl_${CMAKE_MATCH_1})
    set(_fedcl_package "absl CONFIG")
  elseif(_fedcl_dep STREQUAL "gRPC::grpc++")
    set(_fedcl_pc grpc++)
    set(_fedcl_package "gRPC CONFIG")
  elseif(_fedcl_dep STREQUAL "protobuf::libprotobuf")
    set(_fedcl_pc protobuf)
    set(_fedcl_package "Protobuf")
  elseif(_fedcl_dep STREQUAL "TBB::tbb")
    set(_fedcl_pc tbb)
    set(_fedcl_package "TBB CONFIG")
  elseif(_fedcl_dep STREQUAL "OpenSSL::Crypto")
    set(_fedcl_pc libcrypto)
    set(_fedcl_package "OpenSSL")
  elseif(_fedcl_dep STREQUAL "ZLIB::ZLIB")
    set(_fedcl_pc zlib)
    set(_fedcl_package "ZLIB")
  elseif(_fedcl_dep STREQUAL "Threads::Threads")
    string(APPEND FEDCL_PC_LIBS_PRIVATE " -pthread")
    set(_fedcl_package "Threads")
  else()
    message(FATAL_ERROR "packaging.cmake: no package known for ${_fedcl_dep}")
  endif()
  list(APPEND FEDCL_STATIC_PACKAGES "${_fedcl_package}")
  if(_fedcl_pc AND NOT _fedcl_pc IN_LIST FEDCL_PC_REQUIRES)
    list(APPEND FEDCL_PC_REQUIRES_PRIVATE ${_fedcl_pc})
  endif()
endforeach()
list(REMOVE_DUPLICATES FEDCL_STATIC_PACKAGES)
list(REMOVE_ITEM FEDCL_STATIC_PACKAGES "absl CONFIG")  # found for both libraries

# ---- pkg-config -------------------------------------------------------------------------------
list(REMOVE_DUPLICATES FEDCL_PC_REQUIRES_PRIVATE)
list(JOIN FEDCL_PC_REQUIRES " " FEDCL_PC_REQUIRES)
list(JOIN FEDCL_PC_REQUIRES_PRIVATE " " FEDCL_PC_REQUIRES_PRIVATE)
# The file finds the prefix from its own location, so `cmake --install --prefix` may move it.
set(FEDCL_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH FEDCL_PC_TO_PREFIX /${FEDCL_PC_DIR} /)
string(REGEX REPLACE "/$" "" FEDCL_PC_TO_PREFIX "${FEDCL_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/fedcl.pc.in ${CMAKE_CURRENT_BINARY_DIR}/fedcl.pc @ONLY)

# ---- CMake package ----------------------------------------------------------------------------
set(FEDCL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fedcl)
# fedclConfig.cmake.in looks for these before it defines fedcl::client_static.
set(FEDCL_STATIC_FIND_PACKAGES "")
foreach(_fedcl_package IN LISTS FEDCL_STATIC_PACKAGES)
  string(APPEND FEDCL_STATIC_FIND_PACKAGES "  find_package(${_fedcl_package} QUIET)\n")
endforeach()
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/fedclConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/fedclConfig.cmake
  INSTALL_DESTINATION ${FEDCL_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/fedclConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)  # 0.x: a minor release may change the API

# ---- Install ----------------------------------------------------------------------------------
install(FILES ${PROJECT_SOURCE_DIR}/client/include/fedcl/client.h
              ${PROJECT_SOURCE_DIR}/client/include/fedcl/fedcl_c.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fedcl COMPONENT sdk)
install(TARGETS fedcl_client_shared EXPORT fedclTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk NAMELINK_COMPONENT sdk)
install(TARGETS fedcl_client_static EXPORT fedclStaticTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk)
install(EXPORT fedclTargets NAMESPACE fedcl:: DESTINATION ${FEDCL_CMAKE_DIR} COMPONENT sdk)
install(EXPORT fedclStaticTargets NAMESPACE fedcl:: DESTINATION ${FEDCL_CMAKE_DIR}
        COMPONENT sdk)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fedclConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/fedclConfigVersion.cmake
        DESTINATION ${FEDCL_CMAKE_DIR} COMPONENT sdk)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fedcl.pc DESTINATION ${FEDCL_PC_DIR} COMPONENT sdk)
