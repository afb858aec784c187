/*
 * Teaclave WebAssembly payload ABI (reference §6.3, §6.6).
 *
 * A payload is a self-contained wasm32 module (no libc, no WASI) that imports
 * the five file functions below from module "env" and exports
 *
 *     int entrypoint(int argc, char *argv[]);
 *
 * argv holds the task arguments flattened and sorted by key:
 * argv[0] = key0, argv[1] = value0, argv[2] = key1, ... (argc = 2 x number of
 * arguments), each a NUL-terminated string in the module's memory. The value
 * returned, printed in decimal, is the task's summary.
 *
 * Files are named by their function-level name (the FunctionInput/Output
 * name). Every function returns -1 on error.
 */
#ifndef TEACLAVE_CONTEXT_H
#define TEACLAVE_CONTEXT_H

#ifdef __wasm__
#define TEACLAVE_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define TEACLAVE_EXPORT(name) __attribute__((export_name(#name)))
#else
#define TEACLAVE_IMPORT(name)
#define TEACLAVE_EXPORT(name) __attribute__((visibility("default")))
#endif

/* Opens input `fid` for reading: a handle, or -1. */
TEACLAVE_IMPORT(teaclave_open_input) int teaclave_open_input(const char *fid);

/* Creates (truncates) output `fid` for writing: a handle, or -1. */
TEACLAVE_IMPORT(teaclave_create_output) int teaclave_create_output(const char *fid);

/* Reads up to `size` bytes into `buf`: the number read, 0 at end of file, or -1. */
TEACLAVE_IMPORT(teaclave_read_file) int teaclave_read_file(int fd, char *buf, int size);

/* Writes up to `size` bytes of `buf`: the number written, or -1. */
TEACLAVE_IMPORT(teaclave_write_file) int teaclave_write_file(int fd, const char *buf, int size);

/* Closes a handle: 0, or -1 (unknown or already closed handle). */
TEACLAVE_IMPORT(teaclave_close_file) int teaclave_close_file(int fd);

/* ---- Small freestanding helpers (no libc) ---------------------------------- */

static inline int tc_strlen(const char *s) {
    int n = 0;
    while (s[n]) n++;
    return n;
}

static inline int tc_streq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* The value of argument `key` in the flattened argv, or 0 when absent. */
static inline const char *tc_argument(int argc, char *argv[], const char *key) {
    for (int i = 0; i + 1 < argc; i += 2)
        if (argv[i] && tc_streq(argv[i], key)) return argv[i + 1];
    return 0;
}

/* Writes all `size` bytes (retrying short writes): 0, or -1. */
static inline int tc_write_all(int fd, const char *buf, int size) {
    while (size > 0) {
        int n = teaclave_write_file(fd, buf, size);
        if (n <= 0) return -1;
        buf += n;
        size -= n;
    }
    return 0;
}

#endif /* TEACLAVE_CONTEXT_H */
