// EXPECT_FATAL(statement, "substring"): runs `statement` in a fork()ed child with its stderr
// captured through a pipe, and checks that the child exited with a status != 0 and that what it
// wrote to stderr contains "substring" (the named error). For every "bad input ends in fatal()"
// test: fatal() calls exit(1), which would end the test binary if run in-process.
#pragma once
#include <doctest/doctest.h>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

// Runs fn in a child process; returns its exit status (128 + signal if killed) and its stderr.
inline int expect_fatal_run(const std::function<void()>& fn, std::string* err) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); abort(); }
    fflush(nullptr);  // buffered output would otherwise be written twice, by parent and child
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); abort(); }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        fn();
        fflush(nullptr);
        _exit(0);  // returned normally: no fatal() happened
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
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

#define EXPECT_FATAL(statement, substring)                                                    \
    do {                                                                                      \
        std::string _fatal_err;                                                               \
        int _fatal_rc = expect_fatal_run([&]() { statement; }, &_fatal_err);                  \
        INFO("statement: " #statement "\nchild exit status: " << _fatal_rc                    \
             << "\nchild stderr: " << _fatal_err);                                            \
        CHECK(_fatal_rc != 0);                                                                \
        CHECK(_fatal_err.find(substring) != std::string::npos);                               \
    } while (0)
