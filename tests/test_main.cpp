// doctest's main: `build/test_cpu` runs every CPU test; `-tc="name*"` picks some.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
