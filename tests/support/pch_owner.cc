// Owner of the tests' precompiled header (tests/support/test_pch.h); every fedcl_test target
// reuses the header this target compiles. It runs nothing.
int main() { return 0; }
