// EXPECT_FATAL(statement, "substring"): runs `statement` in a fork()ed child, its stderr piped
// back, and checks that the child exited non-zero with "substring" in what it printed. fatal()
// calls exit(1), so a test of a named error cannot run the statement in the test process.
// (Minimal stand-in written on branch optim; the data branch owns the shared version.)
#pragma once
#include <doctest/doctest.h>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

inline int expect_fatal_run(const std::function<void()>& fn, std::string* err) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); abort(); }
    fflush(nullptr);  // or the child writes the parent's buffered output again
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); abort(); }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        fn();
        fflush(nullptr);
        _exit(0);
    }
    close(fds[1]);
    err->clear();
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) err->append(buf, (size_t)n);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
}

#define EXPECT_FATAL(statement, substring)                                                   \
    do {                                                                                     \
        std::string _fatal_err;                                                              \
        int _fatal_rc = expect_fatal_run([&]() { statement; }, &_fatal_err);                 \
        INFO("statement: " #statement "\nexit status: " << _fatal_rc << "\nstderr: " << _fatal_err); \
        CHECK(_fatal_rc != 0);                                                               \
        CHECK(_fatal_err.find(substring) != std::string::npos);                              \
    } while (0)
