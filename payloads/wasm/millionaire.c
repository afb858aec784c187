/*
 * Yao's millionaire problem as a Teaclave WebAssembly payload (reference §10.2).
 *
 * Arguments (looked up by key, in any order):
 *   input_file_id1, input_file_id2  function-level names of the two inputs,
 *                                   each holding one decimal integer;
 *   output_file_id                  function-level name of the output.
 * Each input is an optional sign and at least one decimal digit, with optional
 * ASCII whitespace before and after (e.g. "4211037" or "-12\n"); the value must
 * fit in 64 bits.
 *
 * The output receives the file name (argument value) of the richer party: the
 * value of input_file_id1 if its number is strictly greater, else the value of
 * input_file_id2 (a tie goes to the second party, as upstream). The return
 * value is the number of bytes written. Errors: -1 a missing argument, -2 an
 * I/O error (open/read/write/close), -3 an input that is not such a number.
 *
 * Natively (no __wasm__) only the pure comparison millionaire_richer() is built.
 */
#include "teaclave_context.h"

#define ERR_ARGUMENT (-1)
#define ERR_IO (-2)
#define ERR_NUMBER (-3)

#define MAX_MAGNITUDE 9223372036854775807ULL /* 2^63 - 1 */

/* An incremental parser of one decimal integer (fed chunk by chunk). */
typedef struct {
    int state; /* 0 leading space, 1 after sign, 2 digits, 3 trailing space, -1 bad */
    int negative;
    unsigned long long magnitude;
} number;

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void number_feed(number *n, const char *s, int len) {
    for (int i = 0; i < len && n->state >= 0; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9' && (n->state <= 2)) {
            unsigned long long digit = (unsigned long long)(c - '0');
            if (n->magnitude > (MAX_MAGNITUDE - digit) / 10) {
                n->state = -1; /* does not fit in 64 bits */
                break;
            }
            n->magnitude = n->magnitude * 10 + digit;
            n->state = 2;
        } else if (is_space(c) && (n->state == 0 || n->state >= 2)) {
            if (n->state == 2) n->state = 3;
        } else if ((c == '-' || c == '+') && n->state == 0) {
            n->negative = c == '-';
            n->state = 1;
        } else {
            n->state = -1;
        }
    }
}

/* Compares two parsed numbers: 1 if a > b, else 0; ERR_NUMBER if either is bad. */
static int number_greater(const number *a, const number *b) {
    if (a->state < 2 || b->state < 2) return ERR_NUMBER;
    if (a->negative != b->negative)
        return b->negative && !(a->magnitude == 0 && b->magnitude == 0);
    return a->negative ? a->magnitude < b->magnitude : a->magnitude > b->magnitude;
}

/*
 * The pure comparison, exported for native use: 1 if the number in a[0..alen)
 * is strictly greater than the one in b[0..blen) (party 1 is richer), 2 if not
 * (party 2 is richer or equal), ERR_NUMBER if either text is not a number.
 */
TEACLAVE_EXPORT(millionaire_richer)
int millionaire_richer(const char *a, int alen, const char *b, int blen) {
    number x = {0, 0, 0}, y = {0, 0, 0};
    number_feed(&x, a, alen);
    number_feed(&y, b, blen);
    int greater = number_greater(&x, &y);
    return greater < 0 ? greater : (greater ? 1 : 2);
}

#ifdef __wasm__

/* Parses the whole input `fid` into *n: 0, or ERR_IO. */
static int read_number(const char *fid, number *n) {
    char chunk[64];
    int fd = teaclave_open_input(fid);
    if (fd < 0) return ERR_IO;
    int got;
    while ((got = teaclave_read_file(fd, chunk, (int)sizeof chunk)) > 0) number_feed(n, chunk, got);
    if (teaclave_close_file(fd) < 0 || got < 0) return ERR_IO;
    return 0;
}

TEACLAVE_EXPORT(entrypoint)
int entrypoint(int argc, char *argv[]) {
    const char *input1 = tc_argument(argc, argv, "input_file_id1");
    const char *input2 = tc_argument(argc, argv, "input_file_id2");
    const char *output = tc_argument(argc, argv, "output_file_id");
    if (!input1 || !input2 || !output) return ERR_ARGUMENT;

    number a = {0, 0, 0}, b = {0, 0, 0};
    if (read_number(input1, &a) < 0 || read_number(input2, &b) < 0) return ERR_IO;
    int greater = number_greater(&a, &b);
    if (greater < 0) return greater;

    const char *richer = greater ? input1 : input2;
    int size = tc_strlen(richer);
    int fd = teaclave_create_output(output);
    if (fd < 0) return ERR_IO;
    int written = tc_write_all(fd, richer, size);
    if (teaclave_close_file(fd) < 0 || written < 0) return ERR_IO;
    return size;
}

#endif /* __wasm__ */
