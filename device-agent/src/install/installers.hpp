// The installer implementations behind make_installer() (internal to ota::agent_install).
#pragma once

#include <memory>

#include "install/installer.hpp"

namespace ota::agent::detail {

[[nodiscard]] std::unique_ptr<Installer> make_file_installer();
[[nodiscard]] std::unique_ptr<Installer> make_archive_installer();
[[nodiscard]] std::unique_ptr<Installer> make_docker_installer();
[[nodiscard]] std::unique_ptr<Installer> make_binary_installer();

}  // namespace ota::agent::detail
