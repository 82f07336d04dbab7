#include "passwords.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

#include "ota/crypto.hpp"

namespace ota::fleetsim {
namespace {

constexpr std::size_t salt_len = 12;  // what mosquitto_passwd uses

std::string hex(const unsigned char* data, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(digits[data[i] >> 4]);
        out.push_back(digits[data[i] & 0xf]);
    }
    return out;
}

std::string as_string(const unsigned char* data, std::size_t n) { return {reinterpret_cast<const char*>(data), n}; }

std::string hash_with(PasswordHash kind, std::string_view password, std::string_view salt, int iterations) {
    std::array<unsigned char, 64> out{};
    if (kind == PasswordHash::pbkdf2_sha512) {
        if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                              reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                              iterations, EVP_sha512(), static_cast<int>(out.size()), out.data()) != 1)
            throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
        return as_string(out.data(), out.size());
    }
    // $6$: SHA-512 over the password followed by the salt.
    const std::string input = std::string(password) + std::string(salt);
    unsigned int len = 0;
    if (EVP_Digest(input.data(), input.size(), out.data(), &len, EVP_sha512(), nullptr) != 1)
        throw std::runtime_error("EVP_Digest failed");
    return as_string(out.data(), len);
}

}  // namespace

std::string derive_password(std::string_view secret, std::string_view device) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(device.data()),
         device.size(), mac.data(), &len);
    return hex(mac.data(), 16);
}

std::string password_file_line(std::string_view user, std::string_view password, PasswordHash hash, int iterations) {
    std::array<unsigned char, salt_len> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) throw std::runtime_error("RAND_bytes failed");
    const auto s = as_string(salt.data(), salt.size());
    const auto h = crypto::base64_encode(hash_with(hash, password, s, iterations));
    if (hash == PasswordHash::pbkdf2_sha512)
        return std::string(user) + ":$7$" + std::to_string(iterations) + "$" + crypto::base64_encode(s) + "$" + h;
    return std::string(user) + ":$6$" + crypto::base64_encode(s) + "$" + h;
}

bool password_line_matches(std::string_view line, std::string_view password) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    std::string_view rest = line.substr(colon + 1);
    PasswordHash kind;
    int iterations = 0;
    if (rest.starts_with("$7$")) {
        kind = PasswordHash::pbkdf2_sha512;
        rest.remove_prefix(3);
        const auto d = rest.find('$');
        if (d == std::string_view::npos) return false;
        iterations = std::stoi(std::string(rest.substr(0, d)));
        rest.remove_prefix(d + 1);
    } else if (rest.starts_with("$6$")) {
        kind = PasswordHash::sha512;
        rest.remove_prefix(3);
    } else {
        return false;
    }
    const auto d = rest.find('$');
    if (d == std::string_view::npos) return false;
    auto salt = crypto::base64_decode(rest.substr(0, d));
    if (!salt) return false;
    return crypto::base64_encode(hash_with(kind, password, *salt, iterations)) == rest.substr(d + 1);
}

}  // namespace ota::fleetsim
