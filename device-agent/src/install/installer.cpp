#include "install/installer.hpp"

#include "install/installers.hpp"

namespace ota::agent {

std::unique_ptr<Installer> make_installer(InstallType type) {
    switch (type) {
        case InstallType::file: return detail::make_file_installer();
        case InstallType::archive: return detail::make_archive_installer();
        case InstallType::docker_image: return detail::make_docker_installer();
        case InstallType::binary:
        case InstallType::self: return detail::make_binary_installer();
    }
    return nullptr;
}

}  // namespace ota::agent
