/*
 * parse_only - the benchmark's floor for replay: read a JSON-lines file the
 * way churnd replay does (one line at a time), parse each line with cJSON
 * and free it, and do nothing else. Whatever replay spends beyond this is
 * churnd's own work (envelope, state, rules, RocksDB, alerts).
 *
 *   parse_only FILE|-
 *
 * Prints "lines N parsed N invalid N" on stdout. Exit 0, 1 on bad usage,
 * 2 when the file cannot be read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

int main(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '\0') {
        fputs("usage: parse_only FILE|-\n", stderr);
        return 1;
    }
    const char *path = argv[1];
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "parse_only: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL; /* owned, grown by getline */
    size_t cap = 0;
    ssize_t len;
    unsigned long long n_lines = 0, n_parsed = 0;
    errno = 0;
    while ((len = getline(&line, &cap, f)) != -1) {
        n_lines++;
        size_t n = (size_t)len;
        if (n > 0 && line[n - 1] == '\n') n--;
        cJSON *doc = cJSON_ParseWithLength(line, n);
        if (doc) n_parsed++;
        cJSON_Delete(doc);
    }
    int rc = 0;
    if (ferror(f)) {
        fprintf(stderr, "parse_only: reading %s: %s\n", path, strerror(errno));
        rc = 2;
    }
    free(line);
    if (f != stdin) fclose(f);
    printf("lines %llu parsed %llu invalid %llu\n", n_lines, n_parsed, n_lines - n_parsed);
    return rc;
}
