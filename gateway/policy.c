/*
 * policy: who may enqueue what, where.
 *
 * Owns the name patterns for queues, classes and tiers, and the two decisions made
 * after authentication: whether a principal's scopes and tenant admit it to a queue,
 * and whether a class may run there. Holds no state; everything it decides from is
 * in the loaded config and the verified principal.
 */
#include <string.h>

#include "policy.h"

#define TIER_SCOPE_PREFIX "tier:"
#define QUEUE_SCOPE_PREFIX "queue:"

/* The character classes are spelled out rather than taken from <ctype.h>, whose
 * answers depend on the locale. */
static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The tail shared by queue and tier names: [a-z0-9_-]. */
static int is_name_char(char c)
{
    return is_lower(c) || is_digit(c) || c == '_' || c == '-';
}

static int all_name_chars(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(name[i]))
            return 0;
    }
    return 1;
}

int policy_queue_name_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > POLICY_MAX_QUEUE_NAME)
        return 0;
    if (!is_lower(name[0]) && !is_digit(name[0]))
        return 0;
    return all_name_chars(name, len);
}

int policy_tier_name_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > POLICY_MAX_TIER_NAME)
        return 0;
    if (!is_lower(name[0]))
        return 0;
    return all_name_chars(name, len);
}

/*
 * A Ruby constant path: segments of [A-Z][A-Za-z0-9_]* joined by "::". A leading "::"
 * (top-level lookup) is refused too: Resque stores the name as written, and workers
 * and dashboards should see one spelling per class.
 */
int policy_class_name_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > POLICY_MAX_CLASS_NAME)
        return 0;

    size_t i = 0;
    for (;;) {
        if (i >= len || !is_upper(name[i]))
            return 0;
        i++;
        while (i < len &&
               (is_upper(name[i]) || is_lower(name[i]) || is_digit(name[i]) || name[i] == '_'))
            i++;
        if (i == len)
            return 1;
        if (len - i < 2 || name[i] != ':' || name[i + 1] != ':')
            return 0;
        i += 2;
    }
}

static int tier_index(const struct config *config, const char *name, size_t len, size_t *index)
{
    for (size_t i = 0; i < config->tier_count; i++) {
        const char *tier_name = config->tiers[i].name;
        if (strlen(tier_name) == len && memcmp(tier_name, name, len) == 0) {
            *index = i;
            return 1;
        }
    }
    return 0;
}

static int has_prefix(const char *text, size_t len, const char *prefix, size_t prefix_len)
{
    return len >= prefix_len && memcmp(text, prefix, prefix_len) == 0;
}

/* Whether one scope, not NUL-terminated, grants the queue. */
static int scope_grants(const struct config *config, const struct config_queue *queue,
                        const char *scope, size_t len)
{
    const size_t queue_prefix_len = sizeof QUEUE_SCOPE_PREFIX - 1;
    const size_t tier_prefix_len = sizeof TIER_SCOPE_PREFIX - 1;

    if (has_prefix(scope, len, QUEUE_SCOPE_PREFIX, queue_prefix_len)) {
        const char *name = scope + queue_prefix_len;
        size_t name_len = len - queue_prefix_len;
        return strlen(queue->name) == name_len && memcmp(queue->name, name, name_len) == 0;
    }

    if (has_prefix(scope, len, TIER_SCOPE_PREFIX, tier_prefix_len)) {
        size_t granting_tier;
        if (!tier_index(config, scope + tier_prefix_len, len - tier_prefix_len, &granting_tier))
            return 0;
        return (config->tiers[granting_tier].grants >> queue->tier) & 1u;
    }

    return 0;
}

static int scopes_grant(const struct config *config, const struct config_queue *queue,
                        const struct principal *principal)
{
    /* A principal that auth did not fill completely must still not be read past its end. */
    const char *scopes = principal->scopes;
    size_t scopes_len = strnlen(scopes, sizeof principal->scopes);

    size_t start = 0;
    while (start < scopes_len) {
        size_t end = start;
        while (end < scopes_len && scopes[end] != ' ')
            end++;
        if (end > start && scope_grants(config, queue, scopes + start, end - start))
            return 1;
        start = end + 1;
    }
    return 0;
}

static int tenant_admitted(const struct config_queue *queue, const struct principal *principal)
{
    const char *tenant = principal->tenant;
    size_t tenant_len = strnlen(tenant, sizeof principal->tenant);

    /* Auth refuses a token without a tenant; an empty one here is a bug, so admit nobody. */
    if (tenant_len == 0 || tenant_len == sizeof principal->tenant)
        return 0;
    if (queue->any_tenant)
        return 1;
    for (size_t i = 0; i < queue->tenant_count; i++) {
        if (strcmp(queue->tenants[i], tenant) == 0)
            return 1;
    }
    return 0;
}

/*
 * The scope is checked before the tenant. Both refusals are a 403, but checking the
 * tenant first would let a token with no business on the queue learn, from which
 * refusal it gets, whether its tenant is one the queue serves.
 */
enum policy_status policy_authorize(const struct config *config, const struct config_queue *queue,
                                    const struct principal *principal)
{
    /* grants is a 64-bit mask; a tier index beyond it cannot come from config_load. */
    if (queue->tier >= config->tier_count || queue->tier >= 64)
        return POLICY_INSUFFICIENT_SCOPE;

    if (!scopes_grant(config, queue, principal))
        return POLICY_INSUFFICIENT_SCOPE;
    if (!tenant_admitted(queue, principal))
        return POLICY_TENANT_FORBIDDEN;
    return POLICY_OK;
}

enum policy_status policy_class_allowed(const struct config_queue *queue, const char *class_name,
                                        size_t len)
{
    for (size_t i = 0; i < queue->class_count; i++) {
        const char *allowed = queue->classes[i];
        if (strlen(allowed) == len && memcmp(allowed, class_name, len) == 0)
            return POLICY_OK;
    }
    return POLICY_UNKNOWN_CLASS;
}
