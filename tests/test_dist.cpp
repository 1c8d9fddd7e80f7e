// The multi-GPU rendezvous (optim/rendezvous.h) on the CPU, over loopback: the happy path, and a
// rank that never arrives, a missing rank 0 and a rank 0 that dies mid-handshake each end in a
// named error within the timeout instead of a hang. (The NCCL side, the watchdog's abort of a
// communicator, needs two GPUs: notes/step.md says what was run.)
#include "optim/rendezvous.h"
#include "tests/expect_fatal.h"
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <chrono>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

// A port nobody listens on now: bind to port 0, read what the kernel picked, release it.
static std::string free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, (sockaddr*)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd, (sockaddr*)&a, &len) == 0);
    close(fd);
    return std::to_string(ntohs(a.sin_port));
}

static double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST_CASE("rendezvous: every rank receives rank 0's bytes") {
    const std::string port = free_port();
    const int world = 4;
    std::vector<std::vector<uint8_t>> got(world, std::vector<uint8_t>(128, 0));
    for (int i = 0; i < 128; i++) got[0][i] = (uint8_t)(37 * i + 11);
    std::vector<std::thread> th;
    for (int r = 1; r < world; r++)  // started before rank 0 listens: they retry
        th.emplace_back([&, r] { rendezvous_exchange(r, world, "127.0.0.1", port.c_str(), got[r].data(), 128, 20.0); });
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    rendezvous_exchange(0, world, "127.0.0.1", port.c_str(), got[0].data(), 128, 20.0);
    for (auto& t : th) t.join();
    for (int r = 1; r < world; r++) CHECK(got[r] == got[0]);
}

TEST_CASE("rendezvous: a rank that never arrives, or a missing rank 0, is a named error within the timeout") {
    const std::string port = free_port();
    uint8_t blob[128] = {0};
    auto t0 = std::chrono::steady_clock::now();
    // rank 0 of 3 with only rank 1 coming
    EXPECT_FATAL({
        std::thread r1([&] { uint8_t b[128]; rendezvous_exchange(1, 3, "127.0.0.1", port.c_str(), b, 128, 5.0); });
        r1.detach();
        rendezvous_exchange(0, 3, "127.0.0.1", port.c_str(), blob, 128, 0.5);
    }, "dist: rank 0 waited 0.5 s and only 2 of 3 ranks arrived");
    double dt = since(t0);
    MESSAGE("rank 0 gave up after " << dt << " s (timeout 0.5 s)");
    CHECK(dt >= 0.5);
    CHECK(dt < 3.0);
    t0 = std::chrono::steady_clock::now();
    const std::string port2 = free_port();
    EXPECT_FATAL(rendezvous_exchange(2, 3, "127.0.0.1", port2.c_str(), blob, 128, 0.5),
                 ("dist: rank 2 could not reach rank 0 at 127.0.0.1:" + port2 + " within 0.5 s").c_str());
    dt = since(t0);
    MESSAGE("rank 2 gave up after " << dt << " s (timeout 0.5 s)");
    CHECK(dt >= 0.5);
    CHECK(dt < 3.0);
    EXPECT_FATAL(rendezvous_exchange(1, 2, nullptr, port.c_str(), blob, 128, 0.5), "needs MASTER_ADDR and MASTER_PORT");
}

TEST_CASE("rendezvous: a rank 0 that dies mid-handshake is a named error") {
    const std::string port = free_port();
    // a fake rank 0: accepts, sends 10 of the 128 bytes, then dies (closes), or hangs (keeps the socket)
    for (bool hang : {false, true}) {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)std::stoi(port));
        REQUIRE(bind(ls, (sockaddr*)&a, sizeof a) == 0);
        REQUIRE(listen(ls, 4) == 0);
        std::thread fake([&] {
            int fd = accept(ls, nullptr, nullptr);
            uint8_t b[10] = {1};
            (void)!write(fd, b, sizeof b);
            if (hang) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
            close(fd);
        });
        uint8_t blob[128];
        auto t0 = std::chrono::steady_clock::now();
        if (hang)
            EXPECT_FATAL(rendezvous_exchange(1, 2, "127.0.0.1", port.c_str(), blob, 128, 0.5),
                         ("dist: rendezvous with 127.0.0.1:" + port + " timed out after 0.5 s").c_str());
        else
            EXPECT_FATAL(rendezvous_exchange(1, 2, "127.0.0.1", port.c_str(), blob, 128, 5.0),
                         ("dist: rendezvous with 127.0.0.1:" + port + ": connection lost (closed)").c_str());
        CHECK(since(t0) < 3.0);
        fake.join();
        close(ls);
    }
}
