/*
 * schema_suite: runs the official JSON Schema Test Suite (draft 2020-12) against the
 * schema module. Usage: schema_suite DIRECTORY (the suite's draft2020-12 directory).
 *
 * Each group's schema is compiled. A group whose schema does not compile counts as
 * refused when every load problem names one of the unsupported features that schema.h
 * documents, and as failed otherwise. In a compiled group, every test's verdict must be
 * the suite's. Prints one line per file, then the refused figure, then a last line
 * "N passed, N failed" counting tests (tests of refused groups are in neither number):
 *   NAME.json: groups passed N, refused N, failed N; tests passed N, failed N
 *   refused: N groups, N tests (unsupported features, refused at load)
 *   N passed, N failed
 * with, before a file's line, one indented line per refused or failed group or test.
 * Exits 1 when anything failed, 2 when the suite could not be read.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

#define MAX_FILES 1000
#define PATH_MAX_BYTES 4096

/* The list in schema.h; a refusal must name one of these. */
static const char *const unsupported_features[] = {
    "remote $ref",           "$id-based resolution", "$anchor",          "$dynamicRef",
    "$dynamicAnchor",        "$recursiveRef",        "$recursiveAnchor", "unevaluatedItems",
    "unevaluatedProperties", "$vocabulary",
};

struct load_problems {
    size_t count;
    size_t unexplained; /* problems that name no documented unsupported feature */
    char first_unexplained[512];
    char first[512];
};

struct totals {
    size_t groups_passed, groups_refused, groups_failed;
    size_t tests_passed, tests_failed, tests_refused;
};

static void collect_problem(void *data, const char *message)
{
    struct load_problems *problems = data;
    static const char marker[] = "unsupported feature: ";
    const char *feature = strstr(message, marker);
    bool documented = false;
    if (feature != NULL) {
        feature += sizeof marker - 1;
        for (size_t i = 0; i < sizeof unsupported_features / sizeof unsupported_features[0]; i++) {
            size_t len = strlen(unsupported_features[i]);
            if (strncmp(feature, unsupported_features[i], len) == 0 &&
                (feature[len] == '\0' || feature[len] == ' '))
                documented = true;
        }
    }
    if (problems->count++ == 0)
        snprintf(problems->first, sizeof problems->first, "%s", message);
    if (!documented && problems->unexplained++ == 0)
        snprintf(problems->first_unexplained, sizeof problems->first_unexplained, "%s", message);
}

static const char *description_of(const json_t *object)
{
    const char *description = json_string_value(json_object_get(object, "description"));
    return description != NULL ? description : "(no description)";
}

/* Runs one group; adds to file's totals. */
static void run_group(const char *file, const json_t *group, const struct schema_limits *limits,
                      struct totals *totals)
{
    const json_t *tests = json_object_get(group, "tests");
    size_t test_count = json_array_size(tests);
    struct load_problems problems = {0};
    struct schema *schema =
        schema_compile(json_object_get(group, "schema"), file, limits, collect_problem, &problems);

    if (schema == NULL) {
        if (problems.count > 0 && problems.unexplained == 0) {
            totals->groups_refused++;
            totals->tests_refused += test_count;
            printf("  refused: %s: %s\n", description_of(group), problems.first);
        } else {
            totals->groups_failed++;
            totals->tests_failed += test_count;
            printf("  FAILED to load: %s: %s\n", description_of(group),
                   problems.count > 0 ? problems.first_unexplained : "no reason given");
        }
        return;
    }

    bool group_passed = true;
    for (size_t i = 0; i < test_count; i++) {
        const json_t *test = json_array_get(tests, i);
        bool expected = json_is_true(json_object_get(test, "valid"));
        bool verdict = schema_validate(schema, json_object_get(test, "data"), NULL, 0) == 0;
        if (verdict == expected) {
            totals->tests_passed++;
            continue;
        }
        group_passed = false;
        totals->tests_failed++;
        printf("  FAILED: %s: %s: expected %s, got %s\n", description_of(group),
               description_of(test), expected ? "valid" : "invalid", verdict ? "valid" : "invalid");
    }
    if (group_passed)
        totals->groups_passed++;
    else
        totals->groups_failed++;
    schema_free(schema);
}

static int run_file(const char *directory, const char *name, const struct schema_limits *limits,
                    struct totals *all)
{
    char path[PATH_MAX_BYTES];
    json_error_t error;
    snprintf(path, sizeof path, "%s/%s", directory, name);
    /* The suite has strings with NUL in them; jobgate's request parser refuses those. */
    json_t *groups = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
    if (!json_is_array(groups)) {
        fprintf(stderr, "%s: line %d: %s\n", path, error.line, error.text);
        json_decref(groups);
        return -1;
    }

    struct totals file = {0};
    for (size_t i = 0; i < json_array_size(groups); i++)
        run_group(name, json_array_get(groups, i), limits, &file);
    /* Words before numbers, so that only the last line reads "N passed, N failed". */
    printf("%s: groups passed %zu, refused %zu, failed %zu; tests passed %zu, failed %zu\n", name,
           file.groups_passed, file.groups_refused, file.groups_failed, file.tests_passed,
           file.tests_failed);
    json_decref(groups);

    all->groups_passed += file.groups_passed;
    all->groups_refused += file.groups_refused;
    all->groups_failed += file.groups_failed;
    all->tests_passed += file.tests_passed;
    all->tests_failed += file.tests_failed;
    all->tests_refused += file.tests_refused;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    DIR *directory = opendir(argv[1]);
    if (directory == NULL) {
        perror(argv[1]);
        return 2;
    }
    char *names[MAX_FILES];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL && count < MAX_FILES) {
        size_t len = strlen(entry->d_name);
        if (len > 5 && strcmp(entry->d_name + len - 5, ".json") == 0) {
            names[count] = strdup(entry->d_name);
            if (names[count] == NULL) {
                perror("strdup");
                return 2;
            }
            count++;
        }
    }
    closedir(directory);
    qsort(names, count, sizeof names[0], compare_names);

    /* The suite checks equality up to 2^53 and past it; jobgate's range limit on integers
     * is its own rule on top of JSON Schema, tested by the unit tests, not here. */
    struct schema_limits limits = schema_default_limits;
    limits.max_integer = INT64_MAX;

    struct totals all = {0};
    int status = count == 0 ? 2 : 0;
    for (size_t i = 0; i < count; i++) {
        if (run_file(argv[1], names[i], &limits, &all) != 0)
            status = 2;
        free(names[i]);
    }
    if (status == 0 && (all.groups_failed > 0 || all.tests_failed > 0))
        status = 1;

    printf("refused: %zu groups, %zu tests (unsupported features, refused at load)\n",
           all.groups_refused, all.tests_refused);
    printf("%zu passed, %zu failed\n", all.tests_passed, all.tests_failed);
    return status;
}
