// Writes ggml's quantization of a deterministic 4x512 matrix, one file per type, to compare the
// Java encoders against (see GgmlQuantizeGoldenTest). Built against ggml-quants.c.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include "ggml.h"
#include "ggml-quants.h"

void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "abort %s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { return 0; }
const char * ggml_type_name(enum ggml_type type) { return "?"; }
size_t ggml_type_size(enum ggml_type type) { return 0; }

#define ROWS 4
#define COLS 512
static uint64_t state = 0x9E3779B97F4A7C15ull;
static float next_uniform(void) {   // exact: a 24-bit integer over 2^23
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    int32_t v = (int32_t) (state >> 40) - (1 << 23);
    return (float) v / 8388608.0f;
}

static void fill(float * x) {
    for (int i = 0; i < COLS; i++) x[i] = next_uniform();
    for (int i = 0; i < COLS; i++) x[COLS + i] = next_uniform() * 0.02f;
    for (int i = 0; i < COLS; i++) { float u = next_uniform(); x[2 * COLS + i] = u * u * u * 3.0f; }
    float * r = x + 3 * COLS;
    for (int i = 0; i < COLS; i++) r[i] = next_uniform() * 0.05f;
    for (int i = 0; i < 32; i++) r[i] = 0.0f;                // a zero block
    for (int i = 32; i < 64; i++) r[i] = 0.5f;               // a constant block
    for (int i = 64; i < 96; i++) r[i] = r[i] < 0 ? -r[i] + 0.01f : r[i] + 0.01f;   // all positive
    r[96 + 5] = 4.0f;                                        // an outlier
    r[128 + 7] = -3.0f;                                      // a negative outlier
    for (int i = 256; i < 272; i++) r[i] = 0.0f;             // a zero run of 16 in the second super-block
}

typedef size_t (*quantize_fn)(const float *, void *, int64_t, int64_t, const float *);

int main(int argc, char ** argv) {
    static float x[ROWS * COLS];
    static uint8_t out[ROWS * COLS * 2];
    fill(x);
    struct { const char * name; quantize_fn fn; size_t bytes; } types[] = {
        {"q4_0", quantize_q4_0, 18 * 16}, {"q4_1", quantize_q4_1, 20 * 16}, {"q5_0", quantize_q5_0, 22 * 16},
        {"q5_1", quantize_q5_1, 24 * 16}, {"q8_0", quantize_q8_0, 34 * 16}, {"iq4_nl", quantize_iq4_nl, 18 * 16},
        {"q2_k", quantize_q2_K, 84 * 2}, {"q3_k", quantize_q3_K, 110 * 2}, {"q4_k", quantize_q4_K, 144 * 2},
        {"q5_k", quantize_q5_K, 176 * 2}, {"q6_k", quantize_q6_K, 210 * 2},
    };
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        types[t].fn(x, out, ROWS, COLS, NULL);
        char path[256];
        snprintf(path, sizeof path, "%s/%s.bin", argv[1], types[t].name);
        FILE * f = fopen(path, "wb");
        fwrite(out, 1, types[t].bytes * ROWS, f);
        fclose(f);
    }
    FILE * f = fopen("input.f32", "wb");
    fwrite(x, sizeof(float), ROWS * COLS, f);
    fclose(f);
    return 0;
}
