/*
 * Unit tests for policy: the name patterns, and who may enqueue to which queue.
 *
 * The config here is built by hand, with tiers critical, standard and bulk where
 * standard includes bulk (so its grants are already closed, as config_load leaves them),
 * to keep these tests about the decisions rather than about loading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy.h"

#define VALID(check, literal) check(literal, sizeof(literal) - 1)

enum { CRITICAL, STANDARD, BULK };

static struct config_tier tiers[] = {
    {.name = "critical", .grants = 1u << CRITICAL},
    {.name = "standard", .grants = (1u << STANDARD) | (1u << BULK)},
    {.name = "bulk", .grants = 1u << BULK},
};

static char *invoice_classes[] = {"SendInvoice", "Billing::Refund"};
static char *invoice_tenants[] = {"acme", "globex"};
static char *mailer_classes[] = {"SendWelcomeEmail"};
static char *report_classes[] = {"BuildReport"};

static struct config_queue queues[] = {
    {.name = "invoices",
     .tier = CRITICAL,
     .classes = invoice_classes,
     .class_count = 2,
     .tenants = invoice_tenants,
     .tenant_count = 2},
    {.name = "mailers",
     .tier = STANDARD,
     .classes = mailer_classes,
     .class_count = 1,
     .any_tenant = 1},
    {.name = "reports", .tier = BULK, .classes = report_classes, .class_count = 1, .any_tenant = 1},
};

static const struct config config = {
    .tiers = tiers,
    .tier_count = 3,
    .queues = queues,
    .queue_count = 3,
};

static const struct config_queue *invoices = &queues[0];
static const struct config_queue *mailers = &queues[1];
static const struct config_queue *reports = &queues[2];

/* A principal as auth leaves it: each scope followed by one space. */
static struct principal principal(const char *tenant, const char *scopes)
{
    struct principal result;
    memset(&result, 0, sizeof result);
    snprintf(result.tenant, sizeof result.tenant, "%s", tenant);
    snprintf(result.subject, sizeof result.subject, "service-a");
    snprintf(result.scopes, sizeof result.scopes, "%s", scopes);
    return result;
}

static enum policy_status authorize(const struct config_queue *queue, const char *tenant,
                                    const char *scopes)
{
    struct principal who = principal(tenant, scopes);
    return policy_authorize(&config, queue, &who);
}

static void test_queue_names(void **state)
{
    (void)state;
    assert_true(VALID(policy_queue_name_valid, "invoices"));
    assert_true(VALID(policy_queue_name_valid, "a"));
    assert_true(VALID(policy_queue_name_valid, "9"));
    assert_true(VALID(policy_queue_name_valid, "mail-out_2"));
    assert_true(VALID(policy_queue_name_valid,
                      "a123456789012345678901234567890123456789012345678901234567890123"));

    assert_false(VALID(policy_queue_name_valid, ""));
    assert_false(policy_queue_name_valid(NULL, 0));
    assert_false(VALID(policy_queue_name_valid,
                       "a1234567890123456789012345678901234567890123456789012345678901234"));
    assert_false(VALID(policy_queue_name_valid, "Invoices"));
    assert_false(VALID(policy_queue_name_valid, "-invoices"));
    assert_false(VALID(policy_queue_name_valid, "_invoices"));
    assert_false(VALID(policy_queue_name_valid, "in voices"));
    assert_false(VALID(policy_queue_name_valid, "invoices.eu"));
    assert_false(VALID(policy_queue_name_valid, "invoices:eu"));
    assert_false(VALID(policy_queue_name_valid, "<b>"));
    assert_false(VALID(policy_queue_name_valid, "caf\xc3\xa9"));
    assert_false(VALID(policy_queue_name_valid, "nul\0byte"));
    /* The length is what counts, not a terminator. */
    assert_true(policy_queue_name_valid("invoices/jobs", 8));
}

static void test_tier_names(void **state)
{
    (void)state;
    assert_true(VALID(policy_tier_name_valid, "critical"));
    assert_true(VALID(policy_tier_name_valid, "b"));
    assert_true(VALID(policy_tier_name_valid, "tier-2_low"));
    assert_true(VALID(policy_tier_name_valid,
                      "a123456789012345678901234567890123456789012345678901234567890123"));

    assert_false(VALID(policy_tier_name_valid, ""));
    assert_false(policy_tier_name_valid(NULL, 0));
    assert_false(VALID(policy_tier_name_valid,
                       "a1234567890123456789012345678901234567890123456789012345678901234"));
    assert_false(VALID(policy_tier_name_valid, "2fast"));
    assert_false(VALID(policy_tier_name_valid, "-low"));
    assert_false(VALID(policy_tier_name_valid, "Critical"));
    assert_false(VALID(policy_tier_name_valid, "tier:critical"));
    assert_false(VALID(policy_tier_name_valid, "\xce\xb1"));
}

static void test_class_names(void **state)
{
    (void)state;
    assert_true(VALID(policy_class_name_valid, "SendInvoice"));
    assert_true(VALID(policy_class_name_valid, "A"));
    assert_true(VALID(policy_class_name_valid, "Billing::SendInvoice"));
    assert_true(VALID(policy_class_name_valid, "Billing::V2::Send_Invoice3"));
    assert_true(VALID(policy_class_name_valid, "HTTPJob"));

    assert_false(VALID(policy_class_name_valid, ""));
    assert_false(policy_class_name_valid(NULL, 0));
    assert_false(VALID(policy_class_name_valid, "sendInvoice"));
    assert_false(VALID(policy_class_name_valid, "_Send"));
    assert_false(VALID(policy_class_name_valid, "9Send"));
    assert_false(VALID(policy_class_name_valid, "Foo::"));
    assert_false(VALID(policy_class_name_valid, "::Foo"));
    assert_false(VALID(policy_class_name_valid, "::"));
    assert_false(VALID(policy_class_name_valid, "Foo:Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo:XBar"));
    assert_false(VALID(policy_class_name_valid, "Foo;:Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo:::Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo::::Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo::bar"));
    assert_false(VALID(policy_class_name_valid, "Foo.Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo Bar"));
    assert_false(VALID(policy_class_name_valid, "Foo-Bar"));
    assert_false(VALID(policy_class_name_valid, "Caf\xc3\xa9"));
    assert_false(VALID(policy_class_name_valid, "\xc3\x89t\xc3\xa9"));
    assert_false(VALID(policy_class_name_valid, "Send\0Invoice"));
}

static void test_class_name_length(void **state)
{
    (void)state;
    char name[POLICY_MAX_CLASS_NAME + 2];

    /* "A::A::...": 128 bytes exactly is fine, 129 is not. */
    memset(name, 'B', sizeof name);
    name[0] = 'A';
    assert_true(policy_class_name_valid(name, POLICY_MAX_CLASS_NAME));
    assert_false(policy_class_name_valid(name, POLICY_MAX_CLASS_NAME + 1));

    for (size_t i = 0; i + 3 <= POLICY_MAX_CLASS_NAME; i += 3)
        memcpy(name + i, "A::", 3);
    name[POLICY_MAX_CLASS_NAME - 2] = 'A';
    name[POLICY_MAX_CLASS_NAME - 1] = 'B';
    assert_true(policy_class_name_valid(name, POLICY_MAX_CLASS_NAME));
}

static void test_authorized_by_tier_scope(void **state)
{
    (void)state;
    assert_int_equal(authorize(invoices, "acme", "tier:critical "), POLICY_OK);
    assert_int_equal(authorize(mailers, "acme", "tier:standard "), POLICY_OK);
    assert_int_equal(authorize(reports, "acme", "tier:bulk "), POLICY_OK);
    /* Any scope of several will do, wherever it stands. */
    assert_int_equal(authorize(invoices, "globex", "profile:read tier:bulk tier:critical "),
                     POLICY_OK);
}

static void test_authorized_by_included_tier(void **state)
{
    (void)state;
    /* standard includes bulk, so a standard scope reaches a bulk queue. */
    assert_int_equal(authorize(reports, "acme", "tier:standard "), POLICY_OK);
}

static void test_authorized_by_queue_scope(void **state)
{
    (void)state;
    assert_int_equal(authorize(invoices, "acme", "queue:invoices "), POLICY_OK);
    assert_int_equal(authorize(reports, "acme", "tier:critical queue:reports "), POLICY_OK);
}

static void test_refused_with_wrong_tier(void **state)
{
    (void)state;
    assert_int_equal(authorize(invoices, "acme", "tier:standard "), POLICY_INSUFFICIENT_SCOPE);
    assert_int_equal(authorize(invoices, "acme", "tier:bulk "), POLICY_INSUFFICIENT_SCOPE);
    assert_int_equal(authorize(invoices, "acme", ""), POLICY_INSUFFICIENT_SCOPE);
    assert_int_equal(authorize(invoices, "acme", "queue:mailers "), POLICY_INSUFFICIENT_SCOPE);
    /* Nothing is implied between tiers the config does not link. */
    assert_int_equal(authorize(reports, "acme", "tier:critical "), POLICY_INSUFFICIENT_SCOPE);
}

static void test_refused_upward_through_includes(void **state)
{
    (void)state;
    /* standard includes bulk; bulk does not include standard. */
    assert_int_equal(authorize(mailers, "acme", "tier:bulk "), POLICY_INSUFFICIENT_SCOPE);
}

static void test_scopes_match_exactly(void **state)
{
    (void)state;
    static const char *const near_misses[] = {
        "tier:critica ",        "tier:criticals ", "tier:Critical ", "critical ",
        "tier: critical ",      "tier:",           "tier:unknown ",  "queue:invoice ",
        "queue:invoicesx ",     "queue:",          "queue:* ",       "tier:* ",
        "scope:tier:critical ",
    };
    for (size_t i = 0; i < sizeof near_misses / sizeof near_misses[0]; i++) {
        if (authorize(invoices, "acme", near_misses[i]) != POLICY_INSUFFICIENT_SCOPE)
            fail_msg("scope \"%s\" was taken to grant invoices", near_misses[i]);
    }
    /* Stray spaces from a hand-built principal do not hide a scope. */
    assert_int_equal(authorize(invoices, "acme", "  tier:critical"), POLICY_OK);
}

static void test_tenant_forbidden(void **state)
{
    (void)state;
    assert_int_equal(authorize(invoices, "initech", "tier:critical "), POLICY_TENANT_FORBIDDEN);
    assert_int_equal(authorize(invoices, "acm", "queue:invoices "), POLICY_TENANT_FORBIDDEN);
    assert_int_equal(authorize(invoices, "acmeco", "queue:invoices "), POLICY_TENANT_FORBIDDEN);
    assert_int_equal(authorize(invoices, "ACME", "queue:invoices "), POLICY_TENANT_FORBIDDEN);
    assert_int_equal(authorize(invoices, "globex", "tier:critical "), POLICY_OK);
}

static void test_any_tenant(void **state)
{
    (void)state;
    assert_int_equal(authorize(mailers, "initech", "tier:standard "), POLICY_OK);
    assert_int_equal(authorize(mailers, "*", "tier:standard "), POLICY_OK);
    /* Auth never passes an empty tenant; should one arrive, it is not "any". */
    assert_int_equal(authorize(mailers, "", "tier:standard "), POLICY_TENANT_FORBIDDEN);
}

static void test_scope_is_checked_before_tenant(void **state)
{
    (void)state;
    /* A token with no business on the queue learns nothing about its tenants. */
    assert_int_equal(authorize(invoices, "initech", "tier:bulk "), POLICY_INSUFFICIENT_SCOPE);
}

static void test_class_allowed(void **state)
{
    (void)state;
    assert_int_equal(policy_class_allowed(invoices, "SendInvoice", 11), POLICY_OK);
    assert_int_equal(policy_class_allowed(invoices, "Billing::Refund", 15), POLICY_OK);
    /* The length is what counts, as the name is a slice of the request body. */
    assert_int_equal(policy_class_allowed(invoices, "SendInvoice\", \"args\"", 11), POLICY_OK);

    assert_int_equal(policy_class_allowed(invoices, "SendInvoic", 10), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(invoices, "SendInvoices", 12), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(invoices, "sendinvoice", 11), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(invoices, "Refund", 6), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(invoices, "", 0), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(invoices, "SendInvoice\0", 12), POLICY_UNKNOWN_CLASS);
    assert_int_equal(policy_class_allowed(mailers, "SendInvoice", 11), POLICY_UNKNOWN_CLASS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_names),
        cmocka_unit_test(test_tier_names),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_class_name_length),
        cmocka_unit_test(test_authorized_by_tier_scope),
        cmocka_unit_test(test_authorized_by_included_tier),
        cmocka_unit_test(test_authorized_by_queue_scope),
        cmocka_unit_test(test_refused_with_wrong_tier),
        cmocka_unit_test(test_refused_upward_through_includes),
        cmocka_unit_test(test_scopes_match_exactly),
        cmocka_unit_test(test_tenant_forbidden),
        cmocka_unit_test(test_any_tenant),
        cmocka_unit_test(test_scope_is_checked_before_tenant),
        cmocka_unit_test(test_class_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
