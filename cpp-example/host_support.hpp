// host_support.hpp: small helpers of the C++ example (and the C++ tests): start the wa-emulator
// as a child process, a tiny blocking HTTP/1.1 client over a POSIX socket (for the emulator's
// control endpoints and for posting webhooks), and HMAC-SHA256 (to sign webhook bodies the way
// Meta does, X-Hub-Signature-256). Plain C++17 + POSIX; no libcurl, no OpenSSL.
#ifndef WA_HOST_SUPPORT_HPP
#define WA_HOST_SUPPORT_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace host {

// ---- HMAC-SHA256 (FIPS 180-4 / RFC 2104) ----
class Sha256 {
public:
    Sha256() { Reset(); }
    void Reset()
    {
        static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
        std::memcpy(h_, init, sizeof h_);
        length_ = 0;
        used_ = 0;
    }
    void Update(const void* data, size_t size)
    {
        const unsigned char* p = static_cast<const unsigned char*>(data);
        length_ += size;
        while (size > 0) {
            size_t take = 64 - used_ < size ? 64 - used_ : size;
            std::memcpy(block_ + used_, p, take);
            used_ += take;
            p += take;
            size -= take;
            if (used_ == 64) {
                Block(block_);
                used_ = 0;
            }
        }
    }
    void Final(unsigned char out[32])
    {
        uint64_t bits = length_ * 8;
        unsigned char pad = 0x80;
        Update(&pad, 1);
        unsigned char zero = 0;
        while (used_ != 56)
            Update(&zero, 1);
        unsigned char len[8];
        for (int i = 0; i < 8; i++)
            len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
        Update(len, 8);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++)
                out[4 * i + j] = static_cast<unsigned char>(h_[i] >> (24 - 8 * j));
    }

private:
    static uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
    void Block(const unsigned char* b)
    {
        static const uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t(b[4 * i]) << 24) | (uint32_t(b[4 * i + 1]) << 16) | (uint32_t(b[4 * i + 2]) << 8) |
                   uint32_t(b[4 * i + 3]);
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = bb;
            bb = a;
            a = t1 + t2;
        }
        h_[0] += a, h_[1] += bb, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
    }
    uint32_t h_[8];
    uint64_t length_;
    unsigned char block_[64];
    size_t used_;
};

// "sha256=<hex>" of HMAC-SHA256(key, body): the X-Hub-Signature-256 header value.
inline std::string HubSignature(const std::string& key, const std::string& body)
{
    unsigned char k[64] = {0};
    if (key.size() > 64) {
        Sha256 s;
        s.Update(key.data(), key.size());
        s.Final(k);
    } else {
        std::memcpy(k, key.data(), key.size());
    }
    unsigned char ipad[64], opad[64], inner[32], mac[32];
    for (int i = 0; i < 64; i++) {
        ipad[i] = static_cast<unsigned char>(k[i] ^ 0x36);
        opad[i] = static_cast<unsigned char>(k[i] ^ 0x5c);
    }
    Sha256 s;
    s.Update(ipad, 64);
    s.Update(body.data(), body.size());
    s.Final(inner);
    s.Reset();
    s.Update(opad, 64);
    s.Update(inner, 32);
    s.Final(mac);
    static const char* hex = "0123456789abcdef";
    std::string out = "sha256=";
    for (unsigned char byte : mac) {
        out += hex[byte >> 4];
        out += hex[byte & 15];
    }
    return out;
}

// ---- a tiny HTTP/1.1 client (one request per connection, Connection: close) ----
struct HttpResponse {
    int status = 0; // 0: no answer (connection failed)
    std::string body;
};

// Splits "http://host:port/..." into host and port; false when it is not that shape.
inline bool ParseHttpUrl(const std::string& url, std::string& hostOut, int& portOut)
{
    const std::string prefix = "http://";
    if (url.compare(0, prefix.size(), prefix) != 0)
        return false;
    std::string rest = url.substr(prefix.size());
    size_t slash = rest.find('/');
    if (slash != std::string::npos)
        rest = rest.substr(0, slash);
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos)
        return false;
    hostOut = rest.substr(0, colon);
    portOut = std::atoi(rest.c_str() + colon + 1);
    return portOut > 0;
}

inline HttpResponse Http(const std::string& host, int port, const std::string& method, const std::string& target,
                         const std::string& body = std::string(),
                         const std::vector<std::string>& headers = std::vector<std::string>())
{
    HttpResponse response;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return response;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        ::close(fd);
        return response;
    }
    std::string request = method + " " + target + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                          "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n";
    for (const auto& header : headers)
        request += header + "\r\n";
    request += "\r\n" + body;
    size_t sent = 0;
    while (sent < request.size()) {
        ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            ::close(fd);
            return response;
        }
        sent += static_cast<size_t>(n);
    }
    std::string raw;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        raw.append(buffer, static_cast<size_t>(n));
    }
    ::close(fd);
    size_t space = raw.find(' ');
    size_t end = raw.find("\r\n\r\n");
    if (space == std::string::npos || end == std::string::npos)
        return response;
    response.status = std::atoi(raw.c_str() + space + 1);
    std::string head = raw.substr(0, end);
    std::string rest = raw.substr(end + 4);
    std::string lower = head;
    for (char& ch : lower)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower.find("transfer-encoding: chunked") != std::string::npos) {
        size_t pos = 0;
        for (;;) {
            size_t eol = rest.find("\r\n", pos);
            if (eol == std::string::npos)
                break;
            unsigned long size = std::strtoul(rest.substr(pos, eol - pos).c_str(), nullptr, 16);
            if (size == 0)
                break;
            response.body += rest.substr(eol + 2, size);
            pos = eol + 2 + size + 2;
        }
    } else {
        response.body = rest;
    }
    return response;
}

inline HttpResponse Http(const std::string& baseUrl, const std::string& method, const std::string& target,
                         const std::string& body = std::string(),
                         const std::vector<std::string>& headers = std::vector<std::string>())
{
    std::string host;
    int port = 0;
    if (!ParseHttpUrl(baseUrl, host, port))
        return HttpResponse();
    return Http(host, port, method, target, body, headers);
}

// The value of a top-level "key":"value" or "key":number in a flat JSON text ("" if absent).
inline std::string JsonField(const std::string& json, const std::string& key)
{
    std::string needle = "\"" + key + "\":";
    size_t at = json.find(needle);
    if (at == std::string::npos)
        return std::string();
    at += needle.size();
    while (at < json.size() && json[at] == ' ')
        at++;
    if (at < json.size() && json[at] == '"') {
        size_t end = json.find('"', at + 1);
        return end == std::string::npos ? std::string() : json.substr(at + 1, end - at - 1);
    }
    size_t end = json.find_first_of(",}", at);
    return json.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// ---- a one-request-at-a-time HTTP receiver (the destination of RequestMedia) ----
class HttpSink {
public:
    HttpSink()
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(fd_, 4) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            port_ = 0;
            return;
        }
        port_ = ntohs(address.sin_port);
    }
    ~HttpSink()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    HttpSink(const HttpSink&) = delete;
    HttpSink& operator=(const HttpSink&) = delete;

    int Fd() const { return fd_; }
    int Port() const { return port_; }

    // Accepts one request (call when Fd() is readable), reads it whole (Content-Length), answers
    // 200 and returns the request head and body.
    bool ServeOne(std::string& head, std::string& body)
    {
        int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0)
            return false;
        std::string raw;
        char buffer[8192];
        size_t end = std::string::npos, need = 0;
        for (;;) {
            ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            raw.append(buffer, static_cast<size_t>(n));
            if (end == std::string::npos && (end = raw.find("\r\n\r\n")) != std::string::npos) {
                std::string lower = raw.substr(0, end);
                for (char& ch : lower)
                    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                size_t at = lower.find("content-length:");
                need = at == std::string::npos ? 0 : std::strtoul(lower.c_str() + at + 15, nullptr, 10);
            }
            if (end != std::string::npos && raw.size() >= end + 4 + need)
                break;
        }
        const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        ssize_t sent = ::send(client, answer, sizeof answer - 1, MSG_NOSIGNAL);
        (void)sent;
        ::close(client);
        if (end == std::string::npos)
            return false;
        head = raw.substr(0, end);
        body = raw.substr(end + 4);
        return true;
    }

private:
    int fd_ = -1;
    int port_ = 0;
};

// ---- the emulator as a child process ----
class Emulator {
public:
    Emulator() = default;
    Emulator(const Emulator&) = delete;
    Emulator& operator=(const Emulator&) = delete;
    ~Emulator() { Stop(); }

    // Starts `path --listen 127.0.0.1:0 --exit-on-stdin-eof --quiet [extra...]` and reads its
    // "wa-emulator listening on http://..." line. False (with `error`) on failure.
    bool Start(const std::string& path, const std::vector<std::string>& extra, std::string& error)
    {
        int out[2], in[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(in, O_CLOEXEC) != 0) {
            error = "pipe failed";
            return false;
        }
        pid_t pid = ::fork();
        if (pid < 0) {
            error = "fork failed";
            return false;
        }
        if (pid == 0) {
            ::dup2(out[1], 1);
            ::dup2(in[0], 0);
            std::vector<std::string> args = {path, "--listen", "127.0.0.1:0", "--exit-on-stdin-eof", "--quiet"};
            args.insert(args.end(), extra.begin(), extra.end());
            std::vector<char*> argv;
            for (auto& arg : args)
                argv.push_back(&arg[0]);
            argv.push_back(nullptr);
            ::execv(path.c_str(), argv.data());
            std::fprintf(stderr, "cannot run %s: %s\n", path.c_str(), std::strerror(errno));
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(in[0]);
        pid_ = pid;
        stdin_ = in[1];
        std::string line;
        char ch;
        while (::read(out[0], &ch, 1) == 1 && ch != '\n')
            line += ch;
        ::close(out[0]);
        size_t at = line.find("http://");
        if (at == std::string::npos) {
            error = "emulator did not start (" + line + ")";
            Stop();
            return false;
        }
        url_ = line.substr(at);
        return true;
    }

    const std::string& Url() const { return url_; }

    void Stop()
    {
        if (stdin_ >= 0) {
            ::close(stdin_);
            stdin_ = -1;
        }
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }

private:
    pid_t pid_ = -1;
    int stdin_ = -1;
    std::string url_;
};

} // namespace host

#endif // WA_HOST_SUPPORT_HPP
