// A client certificate's subject CN (ota/crypto.hpp), read with OpenSSL.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ota/crypto.hpp"

namespace ota::crypto {

Expected<std::string> certificate_common_name(const std::filesystem::path& pem_file) {
    const std::string where = "certificate " + pem_file.string();
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(pem_file.c_str(), "rb"), &std::fclose);
    if (!f) return fail(ErrorCode::io_error, where + ": " + std::strerror(errno));
    std::unique_ptr<X509, void (*)(X509*)> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr), &X509_free);
    if (!cert) {
        ERR_clear_error();
        return fail(ErrorCode::key_invalid, where + ": no PEM certificate in the file");
    }
    const X509_NAME* subject = X509_get_subject_name(cert.get());
    const int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    const ASN1_STRING* data = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)) : nullptr;
    if (!data) return fail(ErrorCode::key_invalid, where + ": the subject has no CN");
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n < 0) {
        ERR_clear_error();
        return fail(ErrorCode::key_invalid, where + ": the CN is not a readable string");
    }
    std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
    OPENSSL_free(utf8);
    return cn;
}

}  // namespace ota::crypto
