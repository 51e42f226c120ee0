/*
 * schema_regex: ECMA-262 regular expressions for pattern and patternProperties, run by
 * PCRE2; see schema.h.
 *
 * Owns the compiled patterns and, per thread, the PCRE2 match data that matching
 * needs (created on first use in a thread, freed when the thread exits), so compiled
 * patterns stay read-only and shareable. PCRE2 and ECMA-262 disagree on a few things;
 * rather than hope that schema authors avoid them, the pattern is rewritten into the
 * PCRE2 syntax that means what ECMA means, and what cannot be rewritten is refused.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "text.h"

/* Patterns in schemas are short; a longer one is a mistake or an attack on the loader. */
#define MAX_PATTERN_BYTES 4096

/* The longest replacement below ("\s" as a class) is under 80 bytes per input byte. */
#define REWRITE_GROWTH 80

/*
 * Budgets for one match. A catastrophic pattern such as (a+)+$ hits the match limit in
 * a few milliseconds and the match counts as failed, not passed. The JIT stack is big
 * enough for a group repeated over a whole 65536-character string; the heap limit is
 * for the interpreter, used only where JIT compilation is unavailable.
 */
#define MATCH_LIMIT 1000000
#define HEAP_LIMIT_KIB 16384
#define JIT_STACK_START_BYTES (32 * 1024)
#define JIT_STACK_MAX_BYTES (4 * 1024 * 1024)

/* ECMA's "." matches anything but its four line terminators. */
#define ECMA_DOT "[^\\n\\r\\u2028\\u2029]"

/* ECMA's \s: WhiteSpace (tab, VT, FF, space, NBSP, BOM, Zs) and LineTerminator. */
#define ECMA_SPACE_MEMBERS                                                                         \
    "\\t\\n\\x0b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"           \
    "\\ufeff"

/*
 * The replacements above use \uHHHH and \xHH because PCRE2_ALT_BSUX, which gives ECMA's
 * \u its meaning, also makes \x{...} a plain "x".
 */

struct schema_regex {
    pcre2_code *code;
    pcre2_match_context *match_context;
};

struct rewrite {
    const char *pattern;
    size_t len;
    size_t at;
    struct text out;
    const char *reason; /* set on the first problem */
    bool in_class;
    bool after_quantifier;
};

/* General category long names (as ECMA accepts them) and the short names PCRE2 knows. */
static const char *const category_names[][2] = {
    {"Letter", "L"},
    {"Cased_Letter", "LC"},
    {"Uppercase_Letter", "Lu"},
    {"Lowercase_Letter", "Ll"},
    {"Titlecase_Letter", "Lt"},
    {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"},
    {"Mark", "M"},
    {"Combining_Mark", "M"},
    {"Nonspacing_Mark", "Mn"},
    {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"},
    {"Number", "N"},
    {"Decimal_Number", "Nd"},
    {"digit", "Nd"},
    {"Letter_Number", "Nl"},
    {"Other_Number", "No"},
    {"Punctuation", "P"},
    {"punct", "P"},
    {"Connector_Punctuation", "Pc"},
    {"Dash_Punctuation", "Pd"},
    {"Open_Punctuation", "Ps"},
    {"Close_Punctuation", "Pe"},
    {"Initial_Punctuation", "Pi"},
    {"Final_Punctuation", "Pf"},
    {"Other_Punctuation", "Po"},
    {"Symbol", "S"},
    {"Math_Symbol", "Sm"},
    {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"},
    {"Other_Symbol", "So"},
    {"Separator", "Z"},
    {"Space_Separator", "Zs"},
    {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"},
    {"Other", "C"},
    {"Control", "Cc"},
    {"cntrl", "Cc"},
    {"Format", "Cf"},
    {"Surrogate", "Cs"},
    {"Private_Use", "Co"},
    {"Unassigned", "Cn"},
};

/* What one thread needs to match: created on first use, freed when the thread exits. */
struct scratch {
    pcre2_match_data *match_data;
    pcre2_jit_stack *jit_stack; /* NULL: PCRE2 falls back to 32 KiB of machine stack */
};

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static bool scratch_key_ready;

static void free_scratch(void *data)
{
    struct scratch *scratch = data;
    pcre2_match_data_free(scratch->match_data);
    pcre2_jit_stack_free(scratch->jit_stack);
    free(scratch);
}

static void create_scratch_key(void)
{
    scratch_key_ready = pthread_key_create(&scratch_key, free_scratch) == 0;
}

/* This thread's scratch, created on first use; NULL when memory ran out. */
static struct scratch *thread_scratch(void)
{
    pthread_once(&scratch_once, create_scratch_key);
    if (!scratch_key_ready)
        return NULL;
    struct scratch *scratch = pthread_getspecific(scratch_key);
    if (scratch != NULL)
        return scratch;
    scratch = calloc(1, sizeof *scratch);
    if (scratch == NULL)
        return NULL;
    /* One pair: only whether it matched matters, never what. */
    scratch->match_data = pcre2_match_data_create(1, NULL);
    scratch->jit_stack = pcre2_jit_stack_create(JIT_STACK_START_BYTES, JIT_STACK_MAX_BYTES, NULL);
    if (scratch->match_data == NULL || pthread_setspecific(scratch_key, scratch) != 0) {
        free_scratch(scratch);
        return NULL;
    }
    return scratch;
}

/* PCRE2 asks for a JIT stack during each JIT match; it is the matching thread's own. */
static pcre2_jit_stack *thread_jit_stack(void *unused)
{
    (void)unused;
    struct scratch *scratch = scratch_key_ready ? pthread_getspecific(scratch_key) : NULL;
    return scratch != NULL ? scratch->jit_stack : NULL;
}

static void refuse(struct rewrite *rewrite, const char *reason)
{
    if (rewrite->reason == NULL)
        rewrite->reason = reason;
}

static int peek(const struct rewrite *rewrite, size_t ahead)
{
    size_t at = rewrite->at + ahead;
    return at < rewrite->len ? (unsigned char)rewrite->pattern[at] : -1;
}

static void emit(struct rewrite *rewrite, const char *bytes)
{
    text_append_str(&rewrite->out, bytes);
}

static void copy(struct rewrite *rewrite, size_t count)
{
    text_append(&rewrite->out, rewrite->pattern + rewrite->at, count);
    rewrite->at += count;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* \p{...} and \P{...}: long general category names become the short ones. */
static void rewrite_property(struct rewrite *rewrite)
{
    if (peek(rewrite, 2) != '{') {
        refuse(rewrite, "\\p and \\P need a property name in braces");
        return;
    }
    size_t name_start = rewrite->at + 3;
    const char *close = memchr(rewrite->pattern + name_start, '}', rewrite->len - name_start);
    if (close == NULL) {
        refuse(rewrite, "a \\p{ property name is not closed");
        return;
    }
    const char *name = rewrite->pattern + name_start;
    size_t name_len = (size_t)(close - name);
    static const char *const category_prefixes[] = {"General_Category=", "gc="};
    for (size_t i = 0; i < sizeof category_prefixes / sizeof category_prefixes[0]; i++) {
        size_t prefix_len = strlen(category_prefixes[i]);
        if (name_len > prefix_len && memcmp(name, category_prefixes[i], prefix_len) == 0) {
            name += prefix_len;
            name_len -= prefix_len;
            break;
        }
    }

    text_append(&rewrite->out, rewrite->pattern + rewrite->at, 3);
    const char *mapped = NULL;
    for (size_t i = 0; i < sizeof category_names / sizeof category_names[0]; i++) {
        if (strlen(category_names[i][0]) == name_len &&
            memcmp(category_names[i][0], name, name_len) == 0)
            mapped = category_names[i][1];
    }
    if (mapped != NULL)
        emit(rewrite, mapped);
    else
        text_append(&rewrite->out, name, name_len);
    emit(rewrite, "}");
    rewrite->at = (size_t)(close - rewrite->pattern) + 1;
}

static bool is_syntax_character(int c)
{
    return c != -1 && c != '\0' && strchr("^$\\.*+?()[]{}|/", c) != NULL;
}

static void rewrite_escape(struct rewrite *rewrite)
{
    int c = peek(rewrite, 1);
    rewrite->after_quantifier = false;
    if (c == -1) {
        refuse(rewrite, "the pattern ends with a backslash");
        return;
    }
    switch (c) {
    case 'v':
        /* PCRE2's \v is any vertical space; ECMA's is the vertical tab only. */
        emit(rewrite, "\\x0b");
        rewrite->at += 2;
        return;
    case 'b':
        if (rewrite->in_class) {
            /* Inside a class ECMA's \b is a backspace, not a word boundary. */
            emit(rewrite, "\\x08");
            rewrite->at += 2;
            return;
        }
        copy(rewrite, 2);
        return;
    case 's':
        emit(rewrite, rewrite->in_class ? ECMA_SPACE_MEMBERS : "[" ECMA_SPACE_MEMBERS "]");
        rewrite->at += 2;
        return;
    case 'S':
        /* Limitation: a class cannot hold the complement of ECMA's white space, so "\S"
         * inside a class is refused at load; [^\s...] or (?:\S|...) say the same. */
        if (rewrite->in_class) {
            refuse(rewrite, "\\S inside a character class is not supported");
            return;
        }
        emit(rewrite, "[^" ECMA_SPACE_MEMBERS "]");
        rewrite->at += 2;
        return;
    case 'p':
    case 'P':
        rewrite_property(rewrite);
        return;
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 'B':
    case 't':
    case 'n':
    case 'f':
    case 'r':
    case 'c':
    case 'x':
    case 'u':
    case 'k':
        copy(rewrite, 2);
        return;
    default:
        break;
    }
    if (is_digit(c) || is_syntax_character(c) || (c == '-' && rewrite->in_class)) {
        copy(rewrite, 2);
        return;
    }
    refuse(rewrite, "the pattern uses an escape that ECMA-262 does not have");
}

/* "(?" starts a group kind; only the ones ECMA has are let through. */
static void rewrite_group_start(struct rewrite *rewrite)
{
    rewrite->after_quantifier = false;
    if (peek(rewrite, 1) == '*') {
        refuse(rewrite, "backtracking control verbs are not ECMA-262");
        return;
    }
    if (peek(rewrite, 1) != '?') {
        copy(rewrite, 1);
        return;
    }
    int kind = peek(rewrite, 2);
    if (kind == ':' || kind == '=' || kind == '!') {
        copy(rewrite, 3);
        return;
    }
    if (kind == '<') {
        int next = peek(rewrite, 3);
        if (next == '=' || next == '!') {
            copy(rewrite, 4);
            return;
        }
        if ((next >= 'A' && next <= 'Z') || (next >= 'a' && next <= 'z') || next == '_' ||
            next == '$') {
            copy(rewrite, 3);
            return;
        }
    }
    refuse(rewrite, "the pattern uses a group kind that ECMA-262 does not have");
}

/* At "{": copies a {n}, {n,} or {n,m} quantifier and returns true, or returns false. */
static bool rewrite_braced_quantifier(struct rewrite *rewrite)
{
    size_t ahead = 1;
    bool digits = false;
    while (is_digit(peek(rewrite, ahead))) {
        ahead++;
        digits = true;
    }
    if (!digits)
        return false;
    if (peek(rewrite, ahead) == ',') {
        ahead++;
        while (is_digit(peek(rewrite, ahead)))
            ahead++;
    }
    if (peek(rewrite, ahead) != '}')
        return false;
    copy(rewrite, ahead + 1);
    return true;
}

static void rewrite_outside_class(struct rewrite *rewrite, int c)
{
    switch (c) {
    case '\\':
        rewrite_escape(rewrite);
        return;
    case '.':
        emit(rewrite, ECMA_DOT);
        rewrite->at++;
        rewrite->after_quantifier = false;
        return;
    case '(':
        rewrite_group_start(rewrite);
        return;
    case '[':
        copy(rewrite, 1);
        if (peek(rewrite, 0) == '^')
            copy(rewrite, 1);
        /* A "]" first closes the class at once: ECMA's [] and [^], as PCRE2's
         * ALLOW_EMPTY_CLASS reads them too. */
        if (peek(rewrite, 0) == ']')
            copy(rewrite, 1);
        else
            rewrite->in_class = true;
        rewrite->after_quantifier = false;
        return;
    case '+':
        if (rewrite->after_quantifier) {
            refuse(rewrite, "possessive quantifiers are not ECMA-262");
            return;
        }
        copy(rewrite, 1);
        rewrite->after_quantifier = true;
        return;
    case '*':
        copy(rewrite, 1);
        rewrite->after_quantifier = true;
        return;
    case '?':
        /* After a quantifier "?" makes it lazy, which ECMA has; it ends the quantifier. */
        copy(rewrite, 1);
        rewrite->after_quantifier = !rewrite->after_quantifier;
        return;
    case '{':
        if (rewrite_braced_quantifier(rewrite)) {
            rewrite->after_quantifier = true;
            return;
        }
        copy(rewrite, 1);
        rewrite->after_quantifier = false;
        return;
    default:
        copy(rewrite, 1);
        rewrite->after_quantifier = false;
        return;
    }
}

static void rewrite_inside_class(struct rewrite *rewrite, int c)
{
    switch (c) {
    case '\\':
        rewrite_escape(rewrite);
        return;
    case '[':
        /* ECMA has no POSIX classes: "[" in a class is just a bracket. */
        emit(rewrite, "\\[");
        rewrite->at++;
        return;
    case ']':
        copy(rewrite, 1);
        rewrite->in_class = false;
        return;
    default:
        copy(rewrite, 1);
        return;
    }
}

/*
 * Writes the PCRE2 form of pattern to out and its length to out_len; returns NULL, or
 * the reason it cannot.
 */
static const char *rewrite_pattern(const char *pattern, size_t len, char *out, size_t capacity,
                                   size_t *out_len)
{
    struct rewrite rewrite = {.pattern = pattern, .len = len};
    text_init(&rewrite.out, out, capacity);
    while (rewrite.at < rewrite.len && rewrite.reason == NULL) {
        int c = peek(&rewrite, 0);
        if (rewrite.in_class)
            rewrite_inside_class(&rewrite, c);
        else
            rewrite_outside_class(&rewrite, c);
    }
    if (rewrite.reason == NULL && rewrite.in_class)
        refuse(&rewrite, "a character class is not closed");
    if (rewrite.reason == NULL && text_finish(&rewrite.out) == NULL)
        refuse(&rewrite, "the pattern is too long");
    *out_len = rewrite.out.len;
    return rewrite.reason;
}

static void set_reason(char *reason, size_t reason_size, const char *first, const char *second)
{
    struct text text;
    if (reason_size == 0)
        return;
    text_init(&text, reason, reason_size);
    text_append_str(&text, first);
    text_append_str(&text, second);
    if (text_finish(&text) == NULL) {
        /* Cut to fit: a reason is for a person, and the start says the most. */
        reason[reason_size - 1] = '\0';
    }
}

static pcre2_code *compile_rewritten(const char *rewritten, size_t len, char *reason,
                                     size_t reason_size)
{
    uint32_t options = PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS | PCRE2_DOLLAR_ENDONLY |
                       PCRE2_MATCH_UNSET_BACKREF | PCRE2_NEVER_BACKSLASH_C | PCRE2_NEVER_UCP;
    pcre2_compile_context *context = pcre2_compile_context_create(NULL);
    if (context == NULL) {
        set_reason(reason, reason_size, "out of memory", "");
        return NULL;
    }
    /* \u{...} as ECMA's "u" flag reads it. */
    pcre2_set_compile_extra_options(context, PCRE2_EXTRA_ALT_BSUX);

    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)rewritten, len, options, &error_code, &error_offset, context);
    pcre2_compile_context_free(context);
    if (code == NULL) {
        PCRE2_UCHAR message[256];
        if (pcre2_get_error_message(error_code, message, sizeof message) < 0)
            message[0] = '\0';
        set_reason(reason, reason_size, "invalid regular expression: ", (const char *)message);
    }
    return code;
}

struct schema_regex *schema_regex_compile(const char *pattern, size_t len, char *reason,
                                          size_t reason_size)
{
    if (len > MAX_PATTERN_BYTES) {
        set_reason(reason, reason_size, "the pattern is longer than 4096 bytes", "");
        return NULL;
    }
    size_t capacity = len * REWRITE_GROWTH + 1;
    char *rewritten = malloc(capacity);
    if (rewritten == NULL) {
        set_reason(reason, reason_size, "out of memory", "");
        return NULL;
    }
    size_t rewritten_len = 0;
    const char *problem = rewrite_pattern(pattern, len, rewritten, capacity, &rewritten_len);
    if (problem != NULL) {
        set_reason(reason, reason_size, problem, "");
        free(rewritten);
        return NULL;
    }
    pcre2_code *code = compile_rewritten(rewritten, rewritten_len, reason, reason_size);
    free(rewritten);
    if (code == NULL)
        return NULL;

    /* JIT is only faster; without it the interpreter gives the same answers. */
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);

    struct schema_regex *regex = calloc(1, sizeof *regex);
    pcre2_match_context *match_context = pcre2_match_context_create(NULL);
    if (regex == NULL || match_context == NULL) {
        free(regex);
        pcre2_match_context_free(match_context);
        pcre2_code_free(code);
        set_reason(reason, reason_size, "out of memory", "");
        return NULL;
    }
    pcre2_set_match_limit(match_context, MATCH_LIMIT);
    pcre2_set_heap_limit(match_context, HEAP_LIMIT_KIB);
    pcre2_jit_stack_assign(match_context, thread_jit_stack, NULL);
    regex->code = code;
    regex->match_context = match_context;
    return regex;
}

enum schema_match schema_regex_match(const struct schema_regex *regex, const char *text, size_t len)
{
    struct scratch *scratch = thread_scratch();
    if (scratch == NULL)
        return SCHEMA_MATCH_ERROR;
    /* The match context is only read, so threads share it (pcre2api, "Context blocks"). */
    int result = pcre2_match(regex->code, (PCRE2_SPTR)text, len, 0, 0, scratch->match_data,
                             regex->match_context);
    if (result >= 0)
        return SCHEMA_MATCH_YES;
    if (result == PCRE2_ERROR_NOMATCH)
        return SCHEMA_MATCH_NO;
    return SCHEMA_MATCH_ERROR;
}

void schema_regex_free(struct schema_regex *regex)
{
    if (regex == NULL)
        return;
    pcre2_code_free(regex->code);
    pcre2_match_context_free(regex->match_context);
    free(regex);
}
