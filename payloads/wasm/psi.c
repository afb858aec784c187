/*
 * Private set intersection of two sorted lists as a Teaclave WebAssembly
 * payload: the semantics of the built-in `builtin-ordered-set-intersect`
 * (reference §7.7, src/teaclave/functions/ordered_set_intersect.py).
 *
 * Argument: order = "ascending" or "desending" (sic; anything else: ERR_ORDER).
 * Inputs  input_data1, input_data2: one hex string per line.
 *   - Lines end with "\n" or "\r\n"; a final line may lack its "\n"; an empty
 *     file has no line, and a text ending in "\n" has no empty last line (but
 *     "\n" alone is one empty line, the empty byte string).
 *   - Each line must be an even number of hex digits, upper or lower case
 *     (else ERR_HEX); lines compare as their decoded bytes (lexicographic, a
 *     prefix first), i.e. as the lowercased text.
 *   - Each input must be sorted per `order`, duplicates allowed (else
 *     ERR_ORDERING). Every line of both inputs is checked, including those
 *     read after the other list ended.
 * Outputs output_result1, output_result2: one character per line of the
 *   corresponding input, '1' if the line is matched in the other input, else
 *   '0'; no separator, no newline.
 * Matching is the merge walk: compare the two current lines; when equal mark
 *   both and advance both; otherwise advance the one that comes first in
 *   `order`. So equal lines pair up in order: a run of n equal lines in one
 *   input against m in the other marks the first min(n, m) of each.
 * Return value: the number of matched pairs (the number of '1's in either
 *   output; the built-in's summary is "<k> common items"), or a negative error:
 *   ERR_ARGUMENT (-1) missing `order`, ERR_ORDER (-2), ERR_IO (-3) an
 *   open/read/write/close failed, ERR_HEX (-4), ERR_ORDERING (-5), ERR_MEMORY
 *   (-6) memory could not grow.
 *
 * Streaming: each input is read through teaclave_read_file into a buffer of
 * CHUNK bytes (doubled only when one line and the one before it do not fit),
 * and marks are written in CHUNK-byte blocks, so memory does not grow with
 * the number of lines. Buffers live in pages obtained with memory.grow when
 * entrypoint runs; the module never writes to heap pages that existed before
 * (where the host may have put argv).
 *
 * Natively (no __wasm__) only the pure kernel psi_kernel() is built (the same
 * walk over two texts in memory), for ctypes; define TEACLAVE_NATIVE_IO to also
 * build the streaming entrypoint natively, against a host of your own.
 */
#include "teaclave_context.h"

#define ERR_ARGUMENT (-1)
#define ERR_ORDER (-2)
#define ERR_IO (-3)
#define ERR_HEX (-4)
#define ERR_ORDERING (-5)
#define ERR_MEMORY (-6)

#ifndef CHUNK
#define CHUNK (1 << 20)
#endif

#define IS_HEX(c) (HEX[(unsigned char)(c)])

static const unsigned char HEX[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
};

/* Eight bytes at a time ("SWAR"): byte k of a word is the k-th byte in memory. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the word-at-a-time scans assume a little-endian target (wasm32, x86-64, arm64)"
#endif
typedef unsigned long long word;
#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL
#define FOLD (0x20 * ONES) /* '0'-'9' already have bit 0x20 set; it lowercases 'A'-'F' */

static inline word load_word(const char *p) {
    word w;
    __builtin_memcpy(&w, p, sizeof w);
    return w;
}

/*
 * The high bit of every byte of w that is not a hex digit. For bytes below
 * 0x80, b + (0x80 - lo) has its high bit set iff b >= lo, and b + (0x7f - hi)
 * iff b > hi, with no carry into the next byte.
 */
static inline word non_hex(word w) {
    word low = w & ~HIGH, folded = low | FOLD;
    word digit = (low + (0x80 - '0') * ONES) & ~(low + (0x7f - '9') * ONES);
    word letter = (folded + (0x80 - 'a') * ONES) & ~(folded + (0x7f - 'f') * ONES);
    return (~(digit | letter) & HIGH) | (w & HIGH);
}

/* The index of the first byte of s[i .. end) that is not a hex digit, or end. */
static inline int skip_hex(const char *s, int i, int end) {
    for (; i + 8 <= end; i += 8) {
        word bad = non_hex(load_word(s + i));
        if (bad) return i + (__builtin_ctzll(bad) >> 3);
    }
    while (i < end && IS_HEX(s[i])) i++;
    return i;
}

/* Three-way comparison of two hex strings as lowercase text (prefix first). */
static int compare(const char *x, int xlen, const char *y, int ylen) {
    int n = xlen < ylen ? xlen : ylen, i = 0;
    for (; i + 8 <= n; i += 8) {
        word p = load_word(x + i) | FOLD, q = load_word(y + i) | FOLD;
        if (p != q) {
            int shift = __builtin_ctzll(p ^ q) & ~7;
            return ((p >> shift) & 0xff) < ((q >> shift) & 0xff) ? -1 : 1;
        }
    }
    for (; i < n; i++) {
        unsigned char p = (unsigned char)(x[i] | 0x20), q = (unsigned char)(y[i] | 0x20);
        if (p != q) return p < q ? -1 : 1;
    }
    return xlen < ylen ? -1 : xlen > ylen;
}

/* The unread part of one input and its current line. Offsets index buf. */
typedef struct {
    char *buf;
    int cap;      /* size of buf */
    int end;      /* bytes held */
    int pos;      /* start of the next line */
    int line;     /* the current line: buf[line .. line + len) */
    int len;
    int has_line; /* a current line exists (the one the next is checked against) */
    int eof;      /* nothing more to read: buf[pos .. end) is all that is left */
    int fd;       /* input handle (streaming only) */
} cursor;

/* Where the marks of one input go: buf[0 .. n), flushed to fd when full. */
typedef struct {
    char *buf;
    int cap;
    int n;
    int fd;
    int error;
} sink;

static int cursor_refill(cursor *c);

/* Moves to the next line, checking it: 1, 0 at the end, or a negative error. */
static int next_line(cursor *c, int ascending) {
    int i = c->pos, line_end, next;
    for (;;) {
        const char *s = c->buf;
        int end = c->end;
        i = skip_hex(s, i, end);
        if (i < end) {
            if (s[i] == '\n') {
                line_end = i, next = i + 1;
                break;
            }
            if (s[i] != '\r') return ERR_HEX;
            if (i + 1 < end) {
                if (s[i + 1] != '\n') return ERR_HEX;
                line_end = i, next = i + 2;
                break;
            }
            if (c->eof) return ERR_HEX; /* a lone "\r" ends the text */
        } else if (c->eof) {
            if (i == c->pos) return 0;
            line_end = next = i;
            break;
        }
        int shift = c->pos;
        int status = cursor_refill(c);
        if (status < 0) return status;
        i -= shift - c->pos;
    }
    int len = line_end - c->pos;
    if (len & 1) return ERR_HEX;
    if (c->has_line) {
        int order = compare(c->buf + c->line, c->len, c->buf + c->pos, len);
        if (ascending ? order > 0 : order < 0) return ERR_ORDERING;
    }
    c->line = c->pos, c->len = len, c->has_line = 1, c->pos = next;
    return 1;
}

static void sink_flush(sink *s);

static inline void emit(sink *s, char mark) {
    if (s->n == s->cap) sink_flush(s);
    s->buf[s->n++] = mark;
}

/* The merge walk over two cursors (see the top comment): pairs, or an error. */
static int walk(cursor *a, cursor *b, int ascending, sink *ma, sink *mb) {
    int common = 0;
    int ra = next_line(a, ascending), rb = next_line(b, ascending);
    while (ra > 0 && rb > 0) {
        int order = compare(a->buf + a->line, a->len, b->buf + b->line, b->len);
        if (order == 0) {
            emit(ma, '1'), emit(mb, '1');
            common++;
            ra = next_line(a, ascending), rb = next_line(b, ascending);
        } else if ((order < 0) == ascending) {
            emit(ma, '0');
            ra = next_line(a, ascending);
        } else {
            emit(mb, '0');
            rb = next_line(b, ascending);
        }
    }
    /* What is left of either list has no match; its lines are still checked. */
    while (ra > 0) emit(ma, '0'), ra = next_line(a, ascending);
    while (rb > 0) emit(mb, '0'), rb = next_line(b, ascending);
    if (ra < 0) return ra;
    if (rb < 0) return rb;
    if (ma->error || mb->error) return ma->error ? ma->error : mb->error;
    return common;
}

/*
 * The kernel over two texts in memory (nothing is read or allocated; the texts
 * are not modified). marks_a / marks_b receive one '0'/'1' per line: give them
 * alen / blen bytes (a text has at most as many lines as bytes). lines[0] and
 * lines[1] receive the number of lines of a and b. Returns the number of
 * matched pairs or a negative error (ERR_HEX, ERR_ORDERING); marks and lines
 * are then incomplete.
 */
TEACLAVE_EXPORT(psi_kernel)
int psi_kernel(const char *a, int alen, const char *b, int blen, int ascending, char *marks_a,
               char *marks_b, int *lines) {
    cursor ca = {(char *)a, alen, alen, 0, 0, 0, 0, 1, -1};
    cursor cb = {(char *)b, blen, blen, 0, 0, 0, 0, 1, -1};
    sink ma = {marks_a, alen, 0, -1, 0}, mb = {marks_b, blen, 0, -1, 0};
    int result = walk(&ca, &cb, ascending != 0, &ma, &mb);
    lines[0] = ma.n, lines[1] = mb.n;
    return result;
}

#if defined(__wasm__) || defined(TEACLAVE_NATIVE_IO)

#ifdef __wasm__
/* Fresh zeroed pages at the end of linear memory (never freed), or 0. */
static char *allocate(int size) {
    int pages = (int)(((unsigned)size + 65535u) >> 16);
    int old = __builtin_wasm_memory_grow(0, pages);
    return old < 0 ? 0 : (char *)((unsigned long)old << 16);
}
#define copy_bytes __builtin_memcpy
#define move_bytes __builtin_memmove
#else
void *malloc(unsigned long size);
void *memcpy(void *to, const void *from, unsigned long size);
void *memmove(void *to, const void *from, unsigned long size);
static char *allocate(int size) { return malloc((unsigned long)size); }
#define copy_bytes memcpy
#define move_bytes memmove
#endif

/*
 * Reads more of the input after dropping what precedes the current line (or,
 * with none, the next one), doubling the buffer when that does not make room.
 */
static int cursor_refill(cursor *c) {
    int keep = c->has_line ? c->line : c->pos;
    if (keep > 0) {
        move_bytes(c->buf, c->buf + keep, (unsigned long)(c->end - keep));
        c->end -= keep, c->pos -= keep, c->line -= c->has_line ? keep : 0;
    }
    if (c->end == c->cap) {
        if (c->cap > (1 << 29)) return ERR_MEMORY;
        char *bigger = allocate(2 * c->cap);
        if (!bigger) return ERR_MEMORY;
        copy_bytes(bigger, c->buf, (unsigned long)c->end);
        c->buf = bigger, c->cap *= 2;
    }
    int got = teaclave_read_file(c->fd, c->buf + c->end, c->cap - c->end);
    if (got < 0) return ERR_IO;
    if (got == 0) c->eof = 1;
    c->end += got;
    return 0;
}

static void sink_flush(sink *s) {
    if (!s->error && tc_write_all(s->fd, s->buf, s->n) < 0) s->error = ERR_IO;
    s->n = 0;
}

TEACLAVE_EXPORT(entrypoint)
int entrypoint(int argc, char *argv[]) {
    const char *order = tc_argument(argc, argv, "order");
    if (!order) return ERR_ARGUMENT;
    int ascending = tc_streq(order, "ascending");
    if (!ascending && !tc_streq(order, "desending")) return ERR_ORDER;

    int in1 = teaclave_open_input("input_data1");
    int in2 = teaclave_open_input("input_data2");
    int out1 = teaclave_create_output("output_result1");
    int out2 = teaclave_create_output("output_result2");
    if (in1 < 0 || in2 < 0 || out1 < 0 || out2 < 0) return ERR_IO;

    char *memory = allocate(4 * CHUNK);
    if (!memory) return ERR_MEMORY;
    cursor a = {memory, CHUNK, 0, 0, 0, 0, 0, 0, in1};
    cursor b = {memory + CHUNK, CHUNK, 0, 0, 0, 0, 0, 0, in2};
    sink ma = {memory + 2 * CHUNK, CHUNK, 0, out1, 0};
    sink mb = {memory + 3 * CHUNK, CHUNK, 0, out2, 0};

    int result = walk(&a, &b, ascending, &ma, &mb);
    if (result >= 0) {
        sink_flush(&ma), sink_flush(&mb);
        if (ma.error || mb.error) result = ERR_IO;
    }
    int closed = 0;
    closed |= teaclave_close_file(in1), closed |= teaclave_close_file(in2);
    closed |= teaclave_close_file(out1), closed |= teaclave_close_file(out2);
    return result >= 0 && closed < 0 ? ERR_IO : result;
}

#else /* the in-memory kernel never reads or flushes */

static int cursor_refill(cursor *c) {
    (void)c;
    return ERR_IO;
}

static void sink_flush(sink *s) { s->error = ERR_IO; }

#endif
