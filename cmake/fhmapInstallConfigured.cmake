# fhmap_install_configured(TEMPLATE DESTINATION)
#
# Installs TEMPLATE (its name less ".in") into DESTINATION, configured twice
# with @ONLY: at configure time for everything known then (@PROJECT_VERSION@
# ...), and at install time for @prefix@, @bindir@, @libdir@ and
# @includedir@. Those name the prefix the file is really installed into, also
# with `cmake --install build --prefix DIR`, so an installed .pc file or unit
# always describes the tree it is part of.
function(fhmap_install_configured template destination)
  get_filename_component(name "${template}" NAME)
  string(REGEX REPLACE "\\.in$" "" name "${name}")
  set(stage1 "${CMAKE_CURRENT_BINARY_DIR}/${name}.install.in")
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${name}")

  # Stage 1 keeps the install-time tokens as they are.
  foreach(v prefix bindir libdir includedir)
    set(${v} "@${v}@")
  endforeach()
  configure_file("${template}" "${stage1}" @ONLY)

  set(code "set(prefix \"\${CMAKE_INSTALL_PREFIX}\")\n")
  foreach(d BINDIR LIBDIR INCLUDEDIR)
    string(TOLOWER ${d} v)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
      string(APPEND code "set(${v} \"${CMAKE_INSTALL_${d}}\")\n")
    else()
      string(APPEND code "set(${v} \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_${d}}\")\n")
    endif()
  endforeach()
  string(APPEND code "configure_file(\"${stage1}\" \"${out}\" @ONLY)\n")
  install(CODE "${code}")
  install(FILES "${out}" DESTINATION "${destination}")
endfunction()
