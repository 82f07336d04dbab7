# Debian packages from this one build (CPack DEB, one package per install component):
#   ota-agent          the agent, its self-update launcher, its unit, an example config
#   ota-controller     the controller, ota-ctl, its unit, an example config
#   ota-publish        the CI tool
#   ota-broker-config  the Mosquitto config and ACL (conffiles), the dev-cert script
# Build them with scripts/package (configures with CMAKE_INSTALL_PREFIX=/usr, builds, runs cpack
# and lintian); docs/packaging.md says what each package does at install, upgrade and purge.
# Dependencies come from the binaries (dpkg-shlibdeps); the version is the project's plus the
# commit: <version>+git<commits>.<hash>, which orders one build after the one before it.

execute_process(COMMAND git rev-list --count HEAD
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
  OUTPUT_VARIABLE _ota_commits OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT _ota_commits)
  set(_ota_commits 0)
endif()
# (another version: cpack -D CPACK_PACKAGE_VERSION=..., as scripts/package and the tests do)
set(OTA_PACKAGE_VERSION "${PROJECT_VERSION}+git${_ota_commits}.${OTA_GIT_COMMIT}")

set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL agent controller publish broker)  # not the simulator (component sim)
set(CPACK_PACKAGE_VERSION "${OTA_PACKAGE_VERSION}")
set(CPACK_PACKAGE_VENDOR "OTA project")
set(CPACK_PACKAGE_CONTACT "OTA developers <ota-dev@ota.invalid>")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://ota.invalid/")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)

set(_ota_pkg_dir ${PROJECT_SOURCE_DIR}/packaging/debian)

# ota_debian_package(<component> <package> USER <user|""> UNIT <unit|""> SUMMARY <text>
#                    DESCRIPTION <text> [DEPENDS <deps>] [DIRS <shell lines>] [PURGE <shell lines>]
#                    [CONFFILES <paths>])
# Maintainer scripts come from packaging/debian/{postinst,prerm,postrm}.in with these values.
function(ota_debian_package component package)
  cmake_parse_arguments(P "" "USER;UNIT;SUMMARY;DESCRIPTION;DEPENDS;RECOMMENDS;SUGGESTS" "DIRS;PURGE;CONFFILES" ${ARGN})
  string(TOUPPER ${component} C)
  set(OTA_PKG_NAME ${package})
  set(OTA_PKG_USER "${P_USER}")
  set(OTA_PKG_UNIT "${P_UNIT}")
  set(OTA_PKG_SUMMARY "${P_SUMMARY}")
  list(JOIN P_DIRS "\n" OTA_PKG_DIRS)
  list(JOIN P_PURGE "\n" OTA_PKG_PURGE)
  set(OTA_PKG_USER_BLOCK "    :")
  if(P_USER)  # only then does postinst call adduser (and the package depend on it)
    file(READ ${_ota_pkg_dir}/postinst-user.in block)
    string(CONFIGURE "${block}" OTA_PKG_USER_BLOCK @ONLY)
  endif()
  if(NOT OTA_PKG_DIRS)
    set(OTA_PKG_DIRS "    :")
  endif()
  if(NOT OTA_PKG_PURGE)
    set(OTA_PKG_PURGE "    :")
  endif()
  set(out ${PROJECT_BINARY_DIR}/packaging/${package})
  # /usr/share/doc/<package>: copyright, and a native changelog of this version (gzip -9n: the
  # same bytes for the same input)
  string(TIMESTAMP date "%a, %d %b %Y %H:%M:%S +0000" UTC)
  file(WRITE ${out}/changelog "${package} (${OTA_PACKAGE_VERSION}) unstable; urgency=medium\n\n"
    "  * Built from commit ${OTA_GIT_COMMIT} (docs/ and git log say what changed).\n\n"
    " -- ${CPACK_PACKAGE_CONTACT}  ${date}\n")
  execute_process(COMMAND gzip -9nf ${out}/changelog)
  install(FILES ${out}/changelog.gz ${_ota_pkg_dir}/copyright DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${package}
    COMPONENT ${component})
  set(extra)
  set(scripts)
  if(P_UNIT OR P_USER OR P_DIRS)  # else the package needs no maintainer script
    set(scripts postinst prerm postrm)
  endif()
  foreach(script ${scripts})
    configure_file(${_ota_pkg_dir}/${script}.in ${out}/${script} @ONLY
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    list(APPEND extra ${out}/${script})
  endforeach()
  if(P_CONFFILES)
    list(JOIN P_CONFFILES "\n" lines)
    file(WRITE ${out}/conffiles "${lines}\n")
    list(APPEND extra ${out}/conffiles)
  endif()
  set(CPACK_DEBIAN_${C}_PACKAGE_NAME ${package} PARENT_SCOPE)
  set(CPACK_DEBIAN_${C}_FILE_NAME DEB-DEFAULT PARENT_SCOPE)
  set(CPACK_DEBIAN_${C}_PACKAGE_CONTROL_EXTRA "${extra}" PARENT_SCOPE)
  set(CPACK_DEBIAN_${C}_PACKAGE_DEPENDS "${P_DEPENDS}" PARENT_SCOPE)
  set(CPACK_DEBIAN_${C}_PACKAGE_RECOMMENDS "${P_RECOMMENDS}" PARENT_SCOPE)
  set(CPACK_DEBIAN_${C}_PACKAGE_SUGGESTS "${P_SUGGESTS}" PARENT_SCOPE)
  set(CPACK_COMPONENT_${C}_DISPLAY_NAME ${package} PARENT_SCOPE)
  # CPack takes the first line as the synopsis and the rest as the long description.
  set(CPACK_COMPONENT_${C}_DESCRIPTION "${P_SUMMARY}\n${P_DESCRIPTION}" PARENT_SCOPE)
endfunction()

ota_debian_package(agent ota-agent
  USER "" UNIT ota-agent.service
  SUMMARY "over-the-air update agent for devices"
  DESCRIPTION "Subscribes to its fleet's wave on the OTA broker (outbound MQTT over
TLS only), downloads releases over HTTPS with resume, checks their hash and
Ed25519 signature, installs them (files, archives, docker images, its own
binary) with a health check and rollback, and reports every stage. Runs as
root: it writes its install targets and may run docker. The service starts
once /etc/ota/agent.json exists (see /usr/share/doc/ota-agent/examples)."
  DEPENDS "init-system-helpers (>= 1.54)"
  SUGGESTS "docker.io | podman-docker"
  DIRS "    [ -d /var/lib/ota-agent ] || install -d -m 0700 /var/lib/ota-agent"
       "    # What apt installs wins over an earlier self-update (ota-agent-launch --self-bin): the"
       "    # packaged /usr/bin/ota-agent runs next (a self-update in flight is reported rolled_back)"
       "    rm -rf /var/lib/ota-agent/bin"
       "    rm -f /var/lib/ota-agent/self-update.env /var/lib/ota-agent/self-update.starts"
       "    [ -d /etc/ota/certs ] || install -d -m 0755 /etc/ota/certs"
       "    [ -d /etc/ota/trusted-keys ] || install -d -m 0755 /etc/ota/trusted-keys"
  PURGE "    rm -rf /var/lib/ota-agent")

ota_debian_package(controller ota-controller
  USER ota-controller UNIT ota-controller.service
  SUMMARY "OTA rollout controller and ota-ctl"
  DESCRIPTION "Opens verified releases wave by wave (canary, early, broad) on
retained MQTT topics, watches device status, halts a wave whose failures
cross its threshold, and keeps its state in SQLite. ota-ctl approves, pauses,
resumes, retries and aborts rollouts. The service runs as the system user
ota-controller and starts once /etc/ota/controller.json exists (see
/usr/share/doc/ota-controller/examples)."
  DEPENDS "adduser, init-system-helpers (>= 1.54)"
  DIRS "    [ -d /var/lib/ota-controller ] || install -d -m 0750 -o ota-controller -g ota-controller /var/lib/ota-controller"
       "    [ -d /etc/ota/certs ] || install -d -m 0755 /etc/ota/certs"
       "    [ -d /etc/ota/trusted-keys ] || install -d -m 0755 /etc/ota/trusted-keys"
  PURGE "    rm -rf /var/lib/ota-controller")

ota_debian_package(publish ota-publish
  USER "" UNIT ""
  SUMMARY "signs and publishes OTA release manifests"
  DESCRIPTION "Run by CI once per build: signs a release manifest with Ed25519
and publishes it retained on the OTA broker; also signs the keyset of
release keys with the offline root key.")

ota_debian_package(broker ota-broker-config
  USER "" UNIT ""
  SUMMARY "Mosquitto configuration of the OTA broker"
  DESCRIPTION "The OTA broker's Mosquitto config (TLS listener, certificate
identities, CRL) and its ACL, which binds each device to its own topics and
says who may write releases, waves and control requests; and the script
that makes a development PKI. A drop-in makes Debian's mosquitto.service run it."
  DEPENDS "mosquitto, openssl"
  DIRS "    [ -d /var/lib/ota/mosquitto ] || install -d -m 0750 -o mosquitto -g mosquitto /var/lib/ota/mosquitto"
  PURGE "    rm -rf /var/lib/ota/mosquitto"
        "    rmdir /var/lib/ota 2>/dev/null || true"
  CONFFILES /etc/ota/mosquitto.conf /etc/ota/acl)

# cpack packages what the build made: its install step must not build (`preinstall` would
# otherwise depend on `all`, and two cpack runs on one tree, as the package tests do, would run
# make in it at once). scripts/package builds the packaged programs first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
include(CPack)
