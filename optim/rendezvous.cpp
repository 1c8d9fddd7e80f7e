// TCP rendezvous; see optim/rendezvous.h.
#include "optim/rendezvous.h"
#include "model/common.h"
#include <cerrno>
#include <chrono>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Sends or receives exactly n bytes, giving up when the deadline passes.
static void sock_io(int fd, void* buf, size_t n, bool send_, Clock::time_point t0, double timeout_s, const char* peer) {
    char* p = (char*)buf;
    while (n > 0) {
        pollfd pfd{fd, (short)(send_ ? POLLOUT : POLLIN), 0};
        int left_ms = (int)((timeout_s - seconds_since(t0)) * 1000);
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) fatal("dist: rendezvous with %s timed out after %g s", peer, timeout_s);
        ssize_t k = send_ ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k <= 0) fatal("dist: rendezvous with %s: connection lost (%s)", peer, k == 0 ? "closed" : strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

void rendezvous_exchange(int rank, int world, const char* addr, const char* port, void* blob, size_t n, double timeout_s) {
    if (!addr || !port) fatal("dist: WORLD_SIZE=%d needs MASTER_ADDR and MASTER_PORT in the environment", world);
    const Clock::time_point t0 = Clock::now();
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (rank == 0) hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(rank == 0 ? nullptr : addr, port, &hints, &res);
    if (gai != 0) fatal("dist: cannot resolve MASTER_ADDR=%s MASTER_PORT=%s: %s", addr, port, gai_strerror(gai));
    const std::string peer = std::string(addr) + ":" + port;
    if (rank == 0) {
        int ls = socket(res->ai_family, res->ai_socktype, 0);
        int one = 1;
        if (ls >= 0) setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ls < 0 || bind(ls, res->ai_addr, res->ai_addrlen) != 0 || listen(ls, world) != 0)
            fatal("dist: rank 0 cannot listen on port %s: %s", port, strerror(errno));
        for (int k = 1; k < world; k++) {
            pollfd pfd{ls, POLLIN, 0};
            int left_ms = (int)((timeout_s - seconds_since(t0)) * 1000);
            if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0)
                fatal("dist: rank 0 waited %g s and only %d of %d ranks arrived", timeout_s, k, world);
            int fd = accept(ls, nullptr, nullptr);
            if (fd < 0) fatal("dist: accept failed: %s", strerror(errno));
            sock_io(fd, blob, n, true, t0, timeout_s, "a rank");
            close(fd);
        }
        close(ls);
    } else {
        int fd = -1;
        while (true) {
            fd = socket(res->ai_family, res->ai_socktype, 0);
            if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
            if (fd >= 0) close(fd);
            if (seconds_since(t0) > timeout_s)
                fatal("dist: rank %d could not reach rank 0 at %s within %g s", rank, peer.c_str(), timeout_s);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        sock_io(fd, blob, n, false, t0, timeout_s, peer.c_str());
        close(fd);
    }
    freeaddrinfo(res);
}
