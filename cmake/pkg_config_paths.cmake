# The pkg-config file's prefix, libdir and includedir as written into whatsapp_connector.pc:
# relative to the file's own directory (${pcfiledir}), so that an installed tree can move,
# whatever the depth of the library directory (lib, lib64, lib/x86_64-linux-gnu on Debian and
# Ubuntu with the /usr prefix); absolute directories are written as they are.
function(wa_pkg_config_paths libdir includedir install_prefix)
  if(IS_ABSOLUTE "${libdir}")
    set(prefix "${install_prefix}")
    set(pc_libdir "${libdir}")
  else()
    # Any absolute root will do: only the way up from <libdir>/pkgconfig is wanted.
    file(RELATIVE_PATH up "/root/${libdir}/pkgconfig" "/root")
    string(REGEX REPLACE "/$" "" up "${up}")
    set(prefix "\${pcfiledir}/${up}")
    set(pc_libdir "\${prefix}/${libdir}")
  endif()
  if(IS_ABSOLUTE "${includedir}")
    set(pc_includedir "${includedir}")
  else()
    set(pc_includedir "\${prefix}/${includedir}")
  endif()
  set(WA_PC_PREFIX "${prefix}" PARENT_SCOPE)
  set(WA_PC_LIBDIR "${pc_libdir}" PARENT_SCOPE)
  set(WA_PC_INCLUDEDIR "${pc_includedir}" PARENT_SCOPE)
endfunction()
