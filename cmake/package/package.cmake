# Installation and the Debian package: `cmake --install`, and `cpack` or the `package`
# target (CPack's DEB generator), which builds radraft_<version>_<arch>.deb in the build
# folder. Included from CMakeLists.txt after the radraft target is defined.
#
# The binary compiles in where its model is (RADRAFT_MODELS_DIR), so a package is built in
# a build folder of its own, configured for the installed layout:
#
#   cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
#         -DRADRAFT_MODELS_DIR=/usr/share/radraft/models -DRADRAFT_BUILD_TESTS=OFF
#
# scripts/package.sh does that, with Debian's hardening flags (dpkg-buildflags). The
# `package` target of any other build folder stops with a message saying so: its binary
# would look for the model in the source tree.
#
# What the package holds:
#   /usr/bin/radraft                      the binary (stripped)
#   /usr/share/radraft/models/            the shipped model, its seed archive, the phrase,
#                                         template and code files, the model card README.md
#   /usr/share/man/man1/radraft.1.gz      radraft(1), generated from the binary's own help
#   /etc/radraft/radraft.json             the configuration (a conffile)
#   /lib/systemd/system/radraft.service   the service, `radraft serve` as the radraft user
#   /usr/share/doc/radraft/               copyright, changelog.gz
#   /usr/share/lintian/overrides/radraft  lintian-overrides, each with its reason
# and the maintainer scripts (postinst, prerm, postrm) that add the radraft system user and
# its data directory /var/lib/radraft (mode 0700), and remove what they made on purge.
include(GNUInstallDirs)

set(RADRAFT_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH
    "Folder the systemd unit radraft.service is installed to")
set(RADRAFT_INSTALL_MODELS_DIR "${CMAKE_INSTALL_FULL_DATADIR}/radraft/models")
set(RADRAFT_CONFIG_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/radraft")
set(RADRAFT_CONFIG_FILE "${RADRAFT_CONFIG_DIR}/radraft.json")
set(RADRAFT_DATA_DIR "${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/lib/radraft")
set(RADRAFT_BINARY "${CMAKE_INSTALL_FULL_BINDIR}/radraft")
set(RADRAFT_PACKAGE_SOURCE ${CMAKE_CURRENT_LIST_DIR})
set(RADRAFT_PACKAGE_OUT ${CMAKE_BINARY_DIR}/package)

# The changelog's newest entry must be this version: a new version needs its entry (the
# package's changelog.gz is cmake/package/changelog). Its date is the man page's date too.
file(STRINGS ${RADRAFT_PACKAGE_SOURCE}/changelog changelog_lines)
list(GET changelog_lines 0 changelog_head)
if(NOT changelog_head MATCHES "^radraft \\(([^)]+)\\) ")
  message(FATAL_ERROR "cmake/package/changelog: the first line is not a Debian changelog "
    "entry's first line: ${changelog_head}")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "cmake/package/changelog: the newest entry is version ${CMAKE_MATCH_1}, "
    "but project() says ${PROJECT_VERSION}: add an entry for ${PROJECT_VERSION}")
endif()
foreach(line ${changelog_lines})
  if(line MATCHES "^ -- .*>  [A-Z][a-z][a-z], ([0-9]+) ([A-Z][a-z][a-z]) ([0-9][0-9][0-9][0-9]) ")
    set(RADRAFT_RELEASE_DATE "${CMAKE_MATCH_1} ${CMAKE_MATCH_2} ${CMAKE_MATCH_3}")
    break()
  endif()
endforeach()
if(NOT RADRAFT_RELEASE_DATE)
  message(FATAL_ERROR "cmake/package/changelog: the newest entry has no ' -- NAME <EMAIL>  DATE' line")
endif()

# Every file made for installation is written once by configure_file, so that the service,
# the configuration and the maintainer scripts name the same paths.
foreach(f radraft.service radraft.json postinst prerm postrm conffiles)
  configure_file(${RADRAFT_PACKAGE_SOURCE}/${f}.in ${RADRAFT_PACKAGE_OUT}/${f} @ONLY)
endforeach()

# The changelog, compressed as Debian wants it (gzip -9, no name or time stamp in the header,
# so that the same changelog gives the same bytes).
find_program(RADRAFT_GZIP gzip REQUIRED)
add_custom_command(OUTPUT ${RADRAFT_PACKAGE_OUT}/changelog.gz
  COMMAND ${RADRAFT_GZIP} -9nc ${RADRAFT_PACKAGE_SOURCE}/changelog > ${RADRAFT_PACKAGE_OUT}/changelog.gz
  DEPENDS ${RADRAFT_PACKAGE_SOURCE}/changelog
  COMMENT "Compressing the changelog"
  VERBATIM)

# radraft(1): generated from what the binary itself prints (`radraft help`, every command's
# --help, `radraft config --keys`), so that the man page never repeats their text by hand.
# The build runs the binary for it, so not when it cannot (a cross build) nor in the
# sanitizer and fuzzing builds, which are never installed (and whose binary could report
# at exit).
find_package(Python3 COMPONENTS Interpreter)
if(CMAKE_CROSSCOMPILING OR RADRAFT_SANITIZE OR RADRAFT_TSAN OR RADRAFT_FUZZ)
  add_custom_target(radraft_doc ALL DEPENDS ${RADRAFT_PACKAGE_OUT}/changelog.gz)
elseif(Python3_Interpreter_FOUND)
  add_custom_command(OUTPUT ${RADRAFT_PACKAGE_OUT}/radraft.1.gz
    COMMAND ${Python3_EXECUTABLE} ${RADRAFT_PACKAGE_SOURCE}/manpage.py
            --radraft $<TARGET_FILE:radraft> --version ${PROJECT_VERSION}
            --date ${RADRAFT_RELEASE_DATE} --config-file ${RADRAFT_CONFIG_FILE}
            --data-dir ${RADRAFT_DATA_DIR} --unit ${RADRAFT_SYSTEMD_UNIT_DIR}/radraft.service
            --out ${RADRAFT_PACKAGE_OUT}/radraft.1
    COMMAND ${RADRAFT_GZIP} -9nf ${RADRAFT_PACKAGE_OUT}/radraft.1
    DEPENDS radraft ${RADRAFT_PACKAGE_SOURCE}/manpage.py
    COMMENT "Generating the man page radraft(1)"
    VERBATIM)
  add_custom_target(radraft_doc ALL DEPENDS ${RADRAFT_PACKAGE_OUT}/radraft.1.gz
    ${RADRAFT_PACKAGE_OUT}/changelog.gz)
  install(FILES ${RADRAFT_PACKAGE_OUT}/radraft.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "python3 not found: the man page radraft(1) is not built nor installed")
  add_custom_target(radraft_doc ALL DEPENDS ${RADRAFT_PACKAGE_OUT}/changelog.gz)
endif()

# Folders the installation creates are 0755 whatever the umask of the one who builds.
set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
  GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
install(TARGETS radraft RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# A stripped install (cpack's, or cmake --install --strip) drops the .comment and .note
# sections too, as Debian's dh_strip does: strip alone keeps them.
install(CODE "set(radraft_strip \"${CMAKE_STRIP}\")\nset(radraft_bindir \"${CMAKE_INSTALL_BINDIR}\")")
install(CODE [[
  if(CMAKE_INSTALL_DO_STRIP AND radraft_strip)
    execute_process(COMMAND ${radraft_strip} --remove-section=.comment --remove-section=.note
      "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${radraft_bindir}/radraft" COMMAND_ERROR_IS_FATAL ANY)
  endif()
]])
install(DIRECTORY ${CMAKE_SOURCE_DIR}/models/cxr-resnet-small
  DESTINATION ${CMAKE_INSTALL_DATADIR}/radraft/models)
install(FILES ${CMAKE_SOURCE_DIR}/models/finding-codes.json ${CMAKE_SOURCE_DIR}/models/labeler.json
  ${CMAKE_SOURCE_DIR}/models/report-templates.json ${CMAKE_SOURCE_DIR}/models/README.md
  DESTINATION ${CMAKE_INSTALL_DATADIR}/radraft/models)
install(FILES ${RADRAFT_PACKAGE_OUT}/radraft.json DESTINATION ${RADRAFT_CONFIG_DIR})
install(FILES ${RADRAFT_PACKAGE_OUT}/radraft.service DESTINATION ${RADRAFT_SYSTEMD_UNIT_DIR})
install(FILES ${RADRAFT_PACKAGE_SOURCE}/copyright ${RADRAFT_PACKAGE_OUT}/changelog.gz
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${RADRAFT_PACKAGE_SOURCE}/lintian-overrides
  DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME radraft)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME radraft)
set(CPACK_PACKAGE_VENDOR "the radraft developers")
# The repository's maintainers (its git identity); a site that builds its own package may
# name itself. The address must have a routable host part, or lintian fails the package.
set(CPACK_PACKAGE_CONTACT
    "radraft maintainers <maintainers@users.noreply.b-seed-b72dcb49.example>" CACHE STRING
    "Maintainer of the Debian package (NAME <EMAIL>)")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "draft chest X-ray reports as DICOM Structured Reports")
# The extended description as Debian wants it: lines of at most 80 columns (CPack keeps
# the line breaks, and writes an empty line as " .").
set(CPACK_PACKAGE_DESCRIPTION "\
radraft receives chest radiographs from a PACS by DICOM C-STORE, embeds them
with a small convolutional network, finds similar past studies and drafts a
report through templates. The draft goes back to the PACS as a DICOM
Structured Report (and a FHIR Bundle) for a radiologist to review, correct and
sign in radraft's review queue or web page.

This package holds the radraft command, the encoder model it ships (trained on
NIH ChestX-ray14 radiographs) with its seed archive, and a systemd service that
runs radraft serve as the radraft system user, disabled until it is configured.

radraft is not a diagnostic device: every draft needs a radiologist's review.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# dpkg-shlibdeps computes the libraries' Depends; the maintainer scripts add the user.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${RADRAFT_PACKAGE_OUT}/postinst
  ${RADRAFT_PACKAGE_OUT}/prerm ${RADRAFT_PACKAGE_OUT}/postrm ${RADRAFT_PACKAGE_OUT}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
if(NOT RADRAFT_MODELS_DIR STREQUAL RADRAFT_INSTALL_MODELS_DIR)
  # CPack runs this after installing into its staging folder, before it builds the package.
  file(WRITE ${RADRAFT_PACKAGE_OUT}/refuse.cmake
    "message(FATAL_ERROR \"This build's radraft looks for its model in ${RADRAFT_MODELS_DIR}, "
    "not where the package installs it (${RADRAFT_INSTALL_MODELS_DIR}). Build the package "
    "with scripts/package.sh, or in a build folder configured with "
    "-DCMAKE_INSTALL_PREFIX=/usr -DRADRAFT_MODELS_DIR=/usr/share/radraft/models\")\n")
  set(CPACK_PRE_BUILD_SCRIPTS ${RADRAFT_PACKAGE_OUT}/refuse.cmake)
endif()
include(CPack)
